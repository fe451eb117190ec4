// Run by the File tab's (empty) limit component's js_on_load; page.py puts the limit in for __MAX_MB__.
// Gradio refuses a file over its upload limit in the browser with a brief generic toast and a red "Error" on the
// component, and the status area stays empty. This looks at the file first (picked or dropped on the upload area)
// and, over the limit, keeps it from Gradio and sends its name and size to the server as this component's
// "submit" event: the File tab's status then says, in one sentence, what was refused and what to do.
(() => {
  const maxMb = __MAX_MB__;
  if (!(maxMb > 0) || window.__fileLimit) return;
  window.__fileLimit = true;
  const tooBig = (files) => [...(files || [])].find((f) => f.size > maxMb * 1024 * 1024);
  const refuse = (e, file) => {
    e.stopImmediatePropagation();
    e.preventDefault();
    if (e.target && e.target.value !== undefined) e.target.value = '';
    window.__fileRefused = file.name;
    trigger('submit', {name: file.name, mb: file.size / (1024 * 1024)});
  };
  // capture phase, on the document: before Gradio's own listeners on the input and the drop area
  document.addEventListener('change', (e) => {
    if (!e.target.matches || !e.target.matches('#file-in input[type=file]')) return;
    const file = tooBig(e.target.files);
    if (file) refuse(e, file);
  }, true);
  document.addEventListener('drop', (e) => {
    if (!e.target.closest || !e.target.closest('#file-in')) return;
    const file = tooBig(e.dataTransfer && e.dataTransfer.files);
    if (file) refuse(e, file);
  }, true);
})();
