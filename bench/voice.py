"""Voice-to-voice latency: end of the user's speech → first audio byte of the answer, per policy.

    python -m bench.voice                    # 8 spoken turns per policy, both engine sets
    python -m bench.voice --turns 20 --engines new --json out.json
    python -m bench.voice --quality          # first WER and VAD on noise (bench.voice_quality)
    python -m bench --voice 8                # the same, from the main bench

Engine sets, side by side in one run: ``new`` (the defaults: Silero VAD, Whisper tiny.en,
Piper, speculative transcription), ``new-serial`` (the same with ``speculative_stt = false``:
the recogniser starts only when the turn is committed, as before speculation), ``new-2t``
(the defaults with ``[audio.stt] threads = 2``: one transcript on both cores), ``new-base``
(the defaults with ``[audio.stt] model = "base"``: Whisper base, twice tiny.en's CPU) and ``old``
(energy VAD, pocketsphinx, espeak-ng: the ``[audio]`` table below).

A client speaks Piper-voiced requests into the server **in real time** (40 ms appends, paced by
the clock, as a microphone would), one session per policy (the ``cascade`` extension picks the
tiers, as in the main bench), with ``output_modalities: ["audio"]`` and server VAD. Stamped on
arrival with ``time.perf_counter()``:

    t_end      the append that carried the last sample of speech was sent (end of user speech)
    stopped    input_audio_buffer.speech_stopped         → VAD   = stopped − t_end
    transcribed  …input_audio_transcription.completed    → STT   = transcribed − stopped
    first text   response.created + the trace's ttft_ms  → first text = that − transcribed
    first audio  the first response.output_audio.delta   → TTS first audio = that − first text
                                                           voice-to-voice = first audio − t_end

VAD includes the configured ``silence_duration_ms`` (the price of deciding the turn is over);
STT runs in worker processes; "first
text" includes response creation and the cascade's first release (the speech commit gate);
TTS is the time to the first phrase's audio. The server runs in this process (its STT in
worker processes). ``engines`` times the speech engines alone on the same requests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import msgspec
import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from realtime_cascade import config as config_mod
from realtime_cascade.audio.pcm import RATE, encode_b64
from realtime_cascade.audio.stt import PocketsphinxTranscriber, Transcriber, WhisperTranscriber
from realtime_cascade.audio.tts import EspeakSynthesizer, PiperSynthesizer, Synthesizer
from realtime_cascade.audio.tts.piper import PiperEngine
from realtime_cascade.server.app import RealtimeServer

from .stats import summarize

OLD_ENGINES = """
[audio]
vad = "energy"
[audio.stt]
kind = "pocketsphinx"
[audio.tts]
kind = "espeak"
"""
SERIAL = """
[audio]
speculative_stt = false
"""
BASE = """
[audio.stt]
kind = "whisper"
model = "base"
threads = 2
"""
# tiny.en decoding on two threads: one session's transcript sooner, at the price of
# oversubscribing the cores when several sessions transcribe at once
TWO_THREADS = """
[audio.stt]
kind = "whisper"
threads = 2
"""
ENGINE_SETS = ("new", "new-serial", "new-2t", "new-base", "old")
EXTRA_TOML = {
    "new": "",
    "new-serial": SERIAL,
    "new-2t": TWO_THREADS,
    "new-base": BASE,
    "old": OLD_ENGINES,
}
SERVER_VAD: dict[str, Any] = {"type": "server_vad"}
UTTERANCES = (
    "Do you have a table for two tomorrow evening?",
    "Do you have a table for two today?",
    "Is there a table for two tomorrow evening?",
    "I'd like a table for two tomorrow.",
)
POLICIES: dict[str, dict[str, Any]] = {
    "light-only": {"max_tier": 0},
    "strong-only": {"first_tier": "strong"},
    "cascade": {"policy": {"hedging": False}},
    "cascade+hedge": {"policy": {"hedging": True}},
}
CHUNK_MS = 40
LEAD_MS, TAIL_MS = 300, 1200
STAGES = ("voice_to_voice", "vad", "stt", "first_text", "tts_first_audio")


@dataclass
class Utterance:
    text: str
    samples: np.ndarray
    speech_end: int  # sample index just after the last sample of speech


def utterance(text: str, synth: PiperEngine) -> Utterance:
    speech = np.concatenate([c.samples for c in synth.synthesize(text, None, 1.0)])
    loud = np.flatnonzero(np.abs(speech.astype(np.int32)) >= 300)
    end = int(loud[-1]) + 1 if len(loud) else len(speech)
    lead = np.zeros(LEAD_MS * RATE // 1000, dtype=np.int16)
    tail = np.zeros(TAIL_MS * RATE // 1000, dtype=np.int16)
    return Utterance(text, np.concatenate((lead, speech, tail)), len(lead) + end)


@dataclass
class Turn:
    """One spoken turn's stamps (perf_counter seconds) and what was heard and said."""

    t_end: float = 0.0
    stopped: float | None = None
    transcribed: float | None = None
    created: float | None = None
    ttft_ms: float | None = None
    first_audio: float | None = None
    heard: str = ""
    tiers: str = ""
    status: str = ""
    speculative: bool = False  # cascade.transcription: the transcript was made at a pause
    saved_ms: float = 0.0  # the recogniser's time the turn did not wait for

    def stages(self) -> dict[str, float | None]:
        def ms(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else (a - b) * 1000.0

        first_text = (
            None
            if self.created is None or self.ttft_ms is None
            else self.created + self.ttft_ms / 1000.0
        )
        return {
            "voice_to_voice": ms(self.first_audio, self.t_end),
            "vad": ms(self.stopped, self.t_end),
            "stt": ms(self.transcribed, self.stopped),
            "first_text": ms(first_text, self.transcribed),
            "tts_first_audio": ms(self.first_audio, first_text),
        }


class _Event(msgspec.Struct):
    type: str
    transcript: str = ""
    response: dict[str, Any] | None = None
    trace: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    speculative: bool = False
    saved_ms: float = 0.0


_DECODE = msgspec.json.Decoder(_Event)


async def _speak(ws: ClientConnection, u: Utterance, turn: Turn) -> None:
    """Append ``u`` in real time; stamp when the chunk holding the speech's end went out."""
    step = CHUNK_MS * RATE // 1000
    start = time.perf_counter()
    for i in range(0, len(u.samples), step):
        due = start + i / RATE
        delay = due - time.perf_counter()
        if delay > 0:
            await anyio.sleep(delay)
        chunk = u.samples[i : i + step]
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": encode_b64(chunk)}))
        if i < u.speech_end <= i + step:
            turn.t_end = time.perf_counter()


async def _listen(ws: ClientConnection, turn: Turn) -> None:
    async for data in ws:
        now = time.perf_counter()
        e = _DECODE.decode(data)
        match e.type:
            case "input_audio_buffer.speech_stopped":
                turn.stopped = turn.stopped or now
            case "conversation.item.input_audio_transcription.completed":
                turn.transcribed, turn.heard = now, e.transcript
            case "cascade.transcription":
                turn.speculative, turn.saved_ms = e.speculative, e.saved_ms
            case "response.created":
                turn.created = now
            case "response.output_audio.delta":
                turn.first_audio = turn.first_audio or now
            case "cascade.trace":
                trace = e.trace or {}
                turn.ttft_ms = trace.get("ttft_ms")
                turn.tiers = "→".join(a["tier_name"] for a in trace.get("attempts", []))
            case "response.done":
                turn.status = (e.response or {}).get("status", "")
                return
            case "error" | "conversation.item.input_audio_transcription.failed":
                raise RuntimeError(f"{e.type}: {e.error}")


async def run_policy(
    url: str,
    name: str,
    overrides: dict[str, Any],
    utterances: Sequence[Utterance],
    turns: int,
    turn_detection: dict[str, Any] | None = None,
) -> list[Turn]:
    out: list[Turn] = []
    async with connect(url, max_size=None) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "output_modalities": ["audio"],
                        "cascade": overrides,
                        "audio": {"input": {"turn_detection": turn_detection or SERVER_VAD}},
                    },
                }
            )
        )
        for k in range(turns):
            turn = Turn()
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_listen, ws, turn)
                    await _speak(ws, utterances[k % len(utterances)], turn)
            out.append(turn)
            await anyio.sleep(0.3)
    return out


async def engines(utterances: Sequence[Utterance]) -> dict[str, Any]:
    """The speech engines alone, through their worker processes: per request, per phrase
    (time to the whole phrase, and to its first chunk)."""
    out: dict[str, Any] = {}
    recognisers: list[Transcriber] = [WhisperTranscriber(), PocketsphinxTranscriber()]
    for stt in recognisers:
        await stt.warm()
        stt_ms, audio_s = [], []
        for u in utterances:
            t = time.perf_counter()
            await stt.transcribe(u.samples)
            stt_ms.append((time.perf_counter() - t) * 1000)
            audio_s.append(len(u.samples) / RATE)
        await stt.aclose()
        out[f"stt_{stt.name}_ms"] = summarize(stt_ms)
        out["stt_audio_s"] = summarize(audio_s)
    phrase = "Sakura has tables for two on March 11 at 17:30, 18:00 and 18:30."
    synths: list[Synthesizer] = [PiperSynthesizer(), EspeakSynthesizer()]
    for synth in synths:
        await synth.warm()
        whole: list[float] = []
        first: list[float] = []
        for _ in range(10):
            t = time.perf_counter()
            async for _chunk in synth.synthesize(phrase):
                if len(first) < len(whole) + 1:
                    first.append((time.perf_counter() - t) * 1000)
            whole.append((time.perf_counter() - t) * 1000)
        await synth.aclose()
        out[f"tts_{synth.name}_phrase_ms"] = summarize(whole)
        out[f"tts_{synth.name}_first_chunk_ms"] = summarize(first)
    out["tts_phrase"] = phrase
    return out


async def measure(
    turns: int = 8,
    policies: Sequence[str] = tuple(POLICIES),
    config: str | None = None,
    engine_sets: Sequence[str] = ENGINE_SETS,
    turn_detection: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Voice-to-voice latency and its breakdown per engine set and policy (ms), plus the
    engines alone."""
    synth = PiperEngine(None, 1, (None, None))
    utterances = [utterance(t, synth) for t in UTTERANCES]
    result: dict[str, Any] = {"turns_per_policy": turns, "chunk_ms": CHUNK_MS,
                              "turn_detection": turn_detection or SERVER_VAD,
                              "engines_sets": {}}  # fmt: skip
    text = Path(config).read_text() if config else _default_toml()  # noqa: ASYNC240
    for name in engine_sets:
        cfg = config_mod.loads(text + EXTRA_TOML[name])
        result["engines_sets"][name] = await _policies(
            cfg, turns, policies, utterances, turn_detection
        )
    result["engines"] = await engines(utterances)
    return result


def _default_toml() -> str:
    from importlib import resources

    return resources.files("realtime_cascade").joinpath("default.toml").read_text()


async def _policies(
    cfg: config_mod.Config,
    turns: int,
    policies: Sequence[str],
    utterances: Sequence[Utterance],
    turn_detection: dict[str, Any] | None,
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    async with RealtimeServer(cfg, host="127.0.0.1", port=0) as server:
        url = server.url("default")
        # one throwaway turn: worker processes start and load their models
        await run_policy(url, "warm-up", {}, utterances, 1, turn_detection)
        for name in policies:
            got = await run_policy(url, name, POLICIES[name], utterances, turns, turn_detection)
            cell: dict[str, Any] = {
                stage: summarize(t.stages()[stage] for t in got)  # type: ignore[misc]
                for stage in STAGES
            }
            cell["completed"] = sum(t.status == "completed" for t in got)
            cell["speculative"] = sum(t.speculative for t in got)
            cell["stt_saved_ms"] = summarize(t.saved_ms for t in got)
            cell["heard"] = sorted({t.heard for t in got})
            cell["tier_paths"] = sorted({t.tiers for t in got})
            result[name] = cell
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Voice-to-voice latency, ms (n = {result['turns_per_policy']} spoken turns per policy; "
        f"p50 / p95 / p99; turn detection {result['turn_detection']})",
        "",
        "| engines | policy | voice-to-voice | VAD | STT | first text | TTS first audio "
        "| speculative | STT saved |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(s: dict[str, Any]) -> str:
        if not s.get("n"):
            return "—"
        return " / ".join(f"{s[p]:.0f}" for p in ("p50", "p95", "p99"))

    for engine_set, policies in result["engines_sets"].items():
        for name, c in policies.items():
            row = " | ".join(cell(c[s]) for s in STAGES)
            n = c["voice_to_voice"].get("n", 0)
            saved = c["stt_saved_ms"].get("p50", 0.0) if c["stt_saved_ms"].get("n") else 0.0
            row += f" | {c['speculative']}/{n} | {saved:.0f}"
            lines.append(f"| {engine_set} | {name} | {row} |")
    e = result.get("engines")
    if e:
        lines += [
            "",
            f"Engines alone (p50): Whisper {e['stt_whisper_ms']['p50']:.0f} ms and pocketsphinx "
            f"{e['stt_pocketsphinx_ms']['p50']:.0f} ms for {e['stt_audio_s']['p50']:.1f} s of "
            f"audio; for a {len(e['tts_phrase'])}-character phrase, Piper "
            f"{e['tts_piper_first_chunk_ms']['p50']:.0f} ms to its first sentence and "
            f"{e['tts_piper_phrase_ms']['p50']:.0f} ms in all, espeak-ng "
            f"{e['tts_espeak_phrase_ms']['p50']:.0f} ms.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.voice", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--turns", type=int, default=8, help="spoken turns per policy (8)")
    p.add_argument("--policies", default=",".join(POLICIES), help="comma-separated subset")
    p.add_argument("--config", default=None, help="server config (default: the embedded one)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result here")
    p.add_argument("--engines", default=",".join(ENGINE_SETS), help="new, old or both")
    p.add_argument("--quality", action="store_true", help="first WER and VAD (voice_quality)")
    p.add_argument("--semantic", default=None, metavar="EAGERNESS",
                   help="semantic_vad with this eagerness (default: server_vad)")  # fmt: skip
    args = p.parse_args(argv)
    sets = [x.strip() for x in args.engines.split(",") if x.strip()]
    if any(x not in ENGINE_SETS for x in sets):
        print(f"python -m bench.voice: unknown engine sets {sets}", file=sys.stderr)
        return 2
    if args.quality:
        from . import voice_quality

        quality_json = None if args.json is None else args.json + ".quality.json"
        voice_quality.main([] if quality_json is None else ["--json", quality_json])
    chosen = [x.strip() for x in args.policies.split(",") if x.strip()]
    unknown = [x for x in chosen if x not in POLICIES]
    if unknown or args.turns < 1:
        print(f"python -m bench.voice: unknown policies {unknown} or bad --turns", file=sys.stderr)
        return 2
    td = None if args.semantic is None else {"type": "semantic_vad", "eagerness": args.semantic}
    result = anyio.run(measure, args.turns, chosen, args.config, sets, td)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
