// Run by the live status component's js_on_load (so it is part of the page however it is launched).
// The browser's speech processing (echo cancellation, noise suppression, automatic gain) is made for
// voices: it pumps levels and eats sustained tones, which damages music. Gradio 6 calls
// getUserMedia({audio: true}) and has no option for it, so this wraps getUserMedia before Gradio uses it
// and asks for raw capture. The settings the browser actually granted are kept in window.__micSettings
// (read by the tests). The browser's answer (granted, or the error's name) goes to the server as this
// component's "submit" event: Gradio only shows a brief toast when the microphone is refused, while the
// page would go on saying "listening…".
//
// Gradio's streaming recorder also loads a WAV encoder (extendable-media-recorder) in the background when the
// page opens; on a busy machine that takes seconds, and Record pressed before it is registered fails inside
// Gradio ("... is not a constructor"): Gradio then shows "recording" and sends nothing. So a click on Record
// waits here until the encoder is registered (its module says so: MediaRecorder.isTypeSupported('audio/wav')),
// at most RECORDER_WAIT_MS; if Gradio's recorder still fails to start, the server hears of it ("RecorderNotReady").
(() => {
  window.__micReport = (outcome) => trigger('submit', {mic: outcome});  // this mount's trigger
  if (!window.__recorderGate) {
    window.__recorderGate = true;
    if (performance.setResourceTimingBufferSize) performance.setResourceTimingBufferSize(5000);  // (default 250)
    const RECORDER_WAIT_MS = 30000, NO_MODULE_WAIT_MS = 10000;
    const encoderReady = async () => {  // true / false; null: the encoder's module is not (yet) loaded
      // fetched scripts, and those Vite preloads for a dynamic import (its <link rel=modulepreload>)
      const seen = [...performance.getEntriesByType('resource').map((e) => e.name),
                    ...[...document.querySelectorAll('link[rel=modulepreload]')].map((l) => l.href)];
      const urls = [...new Set(seen.filter((u) => /\/module-[\w-]+\.js(\?|$)/.test(u)))];
      for (const u of urls) {
        try {
          const m = await import(u);  // (the same module instance Gradio loaded)
          if (m.MediaRecorder && typeof m.register === 'function') return m.MediaRecorder.isTypeSupported('audio/wav');
        } catch (e) { /* not that one */ }
      }
      return null;
    };
    // true once the encoder is registered; with giveUp, also when its module has not shown up for a while
    // (still on its way, or a Gradio without it: the click then goes through as it would without this)
    const waitReady = async (giveUp) => {
      const start = Date.now();
      while (Date.now() < start + RECORDER_WAIT_MS) {
        const state = await encoderReady();
        if (state) return true;
        if (giveUp && state === null && Date.now() > start + NO_MODULE_WAIT_MS) return false;
        await new Promise((r) => setTimeout(r, 150));
      }
      return false;
    };
    let ready = false, passing = false, waiting = false;
    waitReady(false).then((ok) => { ready = ready || ok; });
    document.addEventListener('click', (e) => {
      const button = e.target.closest && e.target.closest('#live-mic button');
      if (!button || ready || passing || !/record/i.test(button.textContent) || /stop/i.test(button.textContent)) return;
      e.stopImmediatePropagation();
      e.preventDefault();
      if (waiting) return;  // (one click is on its way already)
      waiting = true;
      window.__recordWaited = (window.__recordWaited || 0) + 1;  // (read by the tests)
      waitReady(true).then(() => {
        ready = true;  // (registered, or waited long enough: Gradio gets the click either way)
        waiting = false;
        passing = true;
        try { button.click(); } finally { passing = false; }
      });
    }, true);
    window.addEventListener('unhandledrejection', (e) => {
      const text = String((e.reason && e.reason.message) || e.reason || '');
      if (/is not a constructor/.test(text)) window.__micReport('RecorderNotReady');
    });
  }
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia || md.__musicFriendly) return;
  const original = md.getUserMedia.bind(md);
  const raw = {echoCancellation: false, noiseSuppression: false, autoGainControl: false};
  md.getUserMedia = async (constraints) => {
    const wantsAudio = !!(constraints && constraints.audio);
    if (wantsAudio) {
      const audio = constraints.audio === true ? {} : {...constraints.audio};
      constraints = {...constraints, audio: {...audio, ...raw}};
    }
    let stream;
    try {
      stream = await original(constraints);
    } catch (e) {
      if (wantsAudio) { window.__micError = e.name; window.__micReport(e.name || 'Error'); }
      throw e;
    }
    const track = stream.getAudioTracks()[0];
    if (track) { window.__micSettings = track.getSettings(); window.__micReport('ok'); }
    return stream;
  };
  md.__musicFriendly = true;
})();
