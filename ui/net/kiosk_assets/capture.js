// The kiosk page's AudioWorklet: the microphone as mono float32 blocks of 2048 frames (43 ms at
// 48 kHz), handed to the page, which converts them to s16le and sends ~100 ms frames. The
// rendering thread only averages channels and copies; it never waits on the page.
const BLOCK = 2048;

class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(BLOCK);
    this.n = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const frames = channels[0].length;
      for (let i = 0; i < frames; i++) {
        let v = 0;
        for (let c = 0; c < channels.length; c++) v += channels[c][i];
        this.block[this.n++] = v / channels.length;
        if (this.n === BLOCK) {
          this.port.postMessage(this.block, [this.block.buffer]);  // handed over, not copied
          this.block = new Float32Array(BLOCK);
          this.n = 0;
        }
      }
    }
    return true;  // keep running while the microphone is silent or gone
  }
}

registerProcessor("capture", Capture);
