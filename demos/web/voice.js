// Server voice for the console: microphone capture to PCM16 and playback of audio deltas.
//
// No DOM and no protocol knowledge: app.js wires these to the WebSocket.
//   Microphone: getUserMedia → AudioContext (24 kHz when allowed) → pcm-worklet.js → onChunk(base64)
//   Player: response.output_audio.delta (base64 PCM16, 24 kHz) → Web Audio, gap-free, in order;
//           stop() says how much of the current item was heard (for conversation.item.truncate).
(() => {
  "use strict";

  const RATE = 24000;

  function toBase64(buffer) {
    const bytes = new Uint8Array(buffer);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(s);
  }

  function fromBase64(b64) {
    const s = atob(b64);
    const bytes = new Uint8Array(s.length & ~1);
    for (let i = 0; i < bytes.length; i++) bytes[i] = s.charCodeAt(i);
    return new Int16Array(bytes.buffer);
  }

  function newContext() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    try {
      return new Ctx({ sampleRate: RATE, latencyHint: "interactive" });
    } catch {
      return new Ctx(); // a browser that cannot run at 24 kHz: the server resamples
    }
  }

  class Microphone {
    constructor({ onChunk, chunkMs = 40 }) {
      this.onChunk = onChunk;
      this.chunkMs = chunkMs;
      this.stream = null;
      this.ctx = null;
      this.node = null;
    }

    get running() { return this.stream !== null; }
    get rate() { return this.ctx ? this.ctx.sampleRate : RATE; }

    static supported() {
      return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia &&
        (window.AudioContext || window.webkitAudioContext) && window.AudioWorkletNode);
    }

    async start() {
      if (this.stream) return;
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      try {
        const ctx = newContext();
        await ctx.audioWorklet.addModule("pcm-worklet.js");
        const node = new AudioWorkletNode(ctx, "pcm16-capture", {
          processorOptions: { chunkMs: this.chunkMs },
        });
        node.port.onmessage = (ev) => { if (this.stream) this.onChunk(toBase64(ev.data)); };
        const mute = ctx.createGain();
        mute.gain.value = 0; // the graph must reach the output to run; nothing is heard
        ctx.createMediaStreamSource(stream).connect(node);
        node.connect(mute).connect(ctx.destination);
        if (ctx.state === "suspended") await ctx.resume();
        this.stream = stream;
        this.ctx = ctx;
        this.node = node;
      } catch (err) {
        stream.getTracks().forEach((t) => t.stop());
        throw err;
      }
    }

    stop() {
      if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
      if (this.node) this.node.port.onmessage = null;
      if (this.ctx) this.ctx.close();
      this.stream = this.ctx = this.node = null;
    }
  }

  class Player {
    constructor(onChange) {
      this.onChange = onChange || (() => {});
      this.ctx = null;
      this.sources = new Set();
      this.playhead = 0;   // context time where the next chunk starts
      this.item = null;    // the item whose audio is queued
      this.spans = [];     // [{at, from, dur}]: context time `at` plays item audio from `from` ms
      this.queuedMs = 0;   // audio of this item queued so far
      this.chunks = 0;     // audio deltas played, all items
    }

    // Call from a user gesture (a click): browsers start audio only after one.
    unlock() {
      if (!this.ctx) this.ctx = newContext();
      if (this.ctx.state === "suspended") this.ctx.resume();
    }

    play(itemId, b64) {
      this.unlock();
      const pcm = fromBase64(b64);
      if (!pcm.length) return;
      const ctx = this.ctx;
      const buf = ctx.createBuffer(1, pcm.length, RATE);
      const f32 = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) f32[i] = pcm[i] / 0x8000;
      buf.copyToChannel(f32, 0);
      if (itemId !== this.item) {
        this.item = itemId;
        this.spans = [];
        this.queuedMs = 0;
      }
      const now = ctx.currentTime;
      if (this.playhead < now + 0.02) this.playhead = now + 0.05; // a little headroom
      const src = ctx.createBufferSource();
      src.buffer = buf;
      src.connect(ctx.destination);
      src.onended = () => {
        this.sources.delete(src);
        if (!this.sources.size) this.onChange(this);
      };
      src.start(this.playhead);
      this.sources.add(src);
      this.spans.push({ at: this.playhead, from: this.queuedMs, dur: buf.duration });
      this.playhead += buf.duration;
      this.queuedMs += buf.duration * 1000;
      this.chunks += 1;
      this.onChange(this);
    }

    get playing() { return this.sources.size > 0; }

    // Milliseconds of the current item played so far.
    playedMs() {
      if (!this.ctx) return 0;
      const now = this.ctx.currentTime;
      let played = 0;
      for (const s of this.spans) {
        if (now < s.at) break;
        played = s.from + Math.min(s.dur, now - s.at) * 1000;
      }
      return played;
    }

    // Silence now. Returns {item, playedMs, queuedMs} of the item that was playing.
    stop() {
      const heard = { item: this.item, playedMs: Math.floor(this.playedMs()), queuedMs: this.queuedMs };
      for (const src of this.sources) {
        src.onended = null;
        try { src.stop(); } catch { /* not started */ }
      }
      this.sources.clear();
      this.playhead = 0;
      this.item = null;
      this.spans = [];
      this.queuedMs = 0;
      this.onChange(this);
      return heard;
    }
  }

  window.RealtimeVoice = { Microphone, Player, RATE };
})();
