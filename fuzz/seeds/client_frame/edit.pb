’E
group:group_00000000000000c3
fixeduser_00000000000000b2"e-1