// Run by the live status component's js_on_load (so it is part of the page however it is launched).
// The browser's speech processing (echo cancellation, noise suppression, automatic gain) is made for
// voices: it pumps levels and eats sustained tones, which damages music. Gradio 6 calls
// getUserMedia({audio: true}) and has no option for it, so this wraps getUserMedia before Gradio uses it
// and asks for raw capture. The settings the browser actually granted are kept in window.__micSettings
// (read by the tests). The browser's answer (granted, or the error's name) goes to the server as this
// component's "submit" event: Gradio only shows a brief toast when the microphone is refused, while the
// page would go on saying "listening…".
(() => {
  window.__micReport = (outcome) => trigger('submit', {mic: outcome});  // this mount's trigger
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
