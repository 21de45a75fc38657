// Picking files to send: the composer's attach button (a hidden <input type=file>),
// dragging files onto the open chat, and pasting files or screenshots into the composer.
// Whatever is picked goes to onFiles(File[]); uploading is files.js's business.

const $ = (id) => document.getElementById(id);

const CLIP_ICON =
  '<svg viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="M21.4 11.6l-8.9 8.9a5.5 5.5 0 0 1-7.8-7.8l8.9-8.9a3.7 3.7 0 0 1 5.2 5.2l-8.9 8.9a1.8 1.8 0 0 1-2.6-2.6l8.2-8.2"/></svg>';

/** True if a drag carries files (not text or a link dragged from the page). */
function hasFiles(e) {
  const types = e.dataTransfer && e.dataTransfer.types;
  return !!types && Array.from(types).includes('Files');
}

/**
 * @param {object} opts
 * @param {(files: File[]) => void} opts.onFiles
 * @param {() => boolean} opts.canAttach a conversation is open
 */
export function initAttach({ onFiles, canAttach }) {
  const button = $('attach');
  const input = $('attach-input');
  const zone = $('chat-view');
  const overlay = $('drop-overlay');
  button.innerHTML = CLIP_ICON;

  button.addEventListener('click', () => {
    if (canAttach()) input.click();
  });
  input.addEventListener('change', () => {
    const files = Array.from(input.files || []);
    input.value = ''; // picking the same file again fires change again
    if (files.length) onFiles(files);
  });

  // Drag and drop onto the chat. dragenter/dragleave fire for every child crossed, so
  // count them to know when the drag really left.
  let depth = 0;
  const show = (on) => {
    overlay.hidden = !on;
    zone.classList.toggle('dropping', on);
  };
  zone.addEventListener('dragenter', (e) => {
    if (!hasFiles(e) || !canAttach()) return;
    e.preventDefault();
    depth += 1;
    show(true);
  });
  zone.addEventListener('dragover', (e) => {
    if (!hasFiles(e) || !canAttach()) return;
    e.preventDefault(); // allows the drop
    e.dataTransfer.dropEffect = 'copy';
    show(true);
  });
  zone.addEventListener('dragleave', (e) => {
    if (!hasFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) show(false);
  });
  zone.addEventListener('drop', (e) => {
    depth = 0;
    show(false);
    const files = Array.from((e.dataTransfer && e.dataTransfer.files) || []);
    if (!files.length) return;
    e.preventDefault();
    if (canAttach()) onFiles(files);
  });
  // A file dropped anywhere else must not make the browser navigate away to it.
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (e) => {
      if (hasFiles(e) && !e.defaultPrevented) e.preventDefault();
    });
  }

  // Pasting a screenshot or copied files into the composer.
  $('composer').addEventListener('paste', (e) => {
    const files = Array.from((e.clipboardData && e.clipboardData.files) || []);
    if (!files.length || !canAttach()) return;
    e.preventDefault();
    onFiles(files);
  });
}
