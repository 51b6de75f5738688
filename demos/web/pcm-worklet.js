// An AudioWorklet processor: microphone samples in (Float32, the context's rate), PCM16 out.
//
// It batches `chunkMs` of audio (mono: the first channel) into one little-endian Int16Array and
// posts its buffer to the page, which base64-encodes it for input_audio_buffer.append. The
// context runs at 24 kHz where the browser allows it (the protocol's rate); otherwise the page
// tells the server the real rate (session.audio.input.format.rate) and the server resamples.
class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const chunkMs = (options && options.processorOptions && options.processorOptions.chunkMs) || 40;
    this.size = Math.max(128, Math.round((sampleRate * chunkMs) / 1000));
    this.buf = new Int16Array(this.size);
    this.n = 0;
  }

  process(inputs) {
    const input = inputs[0];
    const samples = input && input[0];
    if (samples) {
      for (let i = 0; i < samples.length; i++) {
        const s = Math.max(-1, Math.min(1, samples[i]));
        this.buf[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.n === this.size) {
          this.port.postMessage(this.buf.buffer, [this.buf.buffer]);
          this.buf = new Int16Array(this.size);
          this.n = 0;
        }
      }
    }
    return true; // keep running while the page holds the node
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
