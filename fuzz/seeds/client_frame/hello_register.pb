
bobhunter22Bob*laptop