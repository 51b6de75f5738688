"""Speech engines' quality, side by side: WER per recogniser, VAD false speech on noise.

    python -m bench.voice_quality                 # ~15 minutes here; JSON with --json PATH
    python -m bench.voice_quality --from-json PATH  # print a saved run's tables
    python -m bench.voice --quality               # the same, then the latency run

The spoken test set is :data:`SENTENCES` (52 booking-domain requests), each synthesised by
Piper (the new default voice) and by espeak-ng (the old one), clean and with white noise at
15 dB SNR (noise power against the speech's own power): 208 recordings. Each recogniser
(Whisper tiny.en, int8, 1 thread; pocketsphinx) transcribes every recording *in this
process* (the engines' worker classes, called directly: no IPC in the timing), and

Whisper runs several ways in the same run: ``whisper`` with the server's defaults (tiny.en,
greedy, no prompt, the 10 s window: what a session gets that sets nothing), ``whisper 30 s
window`` (``short_window = false``: faster-whisper's own path), ``whisper beam5``
(``beam_size = 5``), ``whisper +prompt``: the defaults with :data:`BOOKING_PROMPT` as
``session.audio.input.transcription.prompt``, what a booking agent would set (it names the
domain, not the test sentences), and ``whisper base`` (``model = "base"``) with and without it.
The table's last column is the WER over both voices' clean recordings.

- **WER** = word edits / reference words, over the whole set, after normalising both sides
  (lower case, no punctuation, digits and times spelled out: Whisper writes "2" and "7:30");
- **CPU per audio second** = ``time.process_time()`` spent transcribing / seconds of audio.

The VADs (Silero, energy) are fed 10 s each of digital silence and of white, pink and brown
noise at -25 dBFS RMS (louder than a quiet room's hiss, softer than speech), after 1 s of
silence: a **false turn** is a ``speech_started`` on noise; **false speech** is the share of
20 ms steps the VAD spent "speaking". Both also get every clean recording (with 300 ms of
silence before and 900 ms after): **missed** counts those in which no speech was found.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from realtime_cascade.audio.pcm import RATE, Samples
from realtime_cascade.audio.stt.pocketsphinx import DECODER_RATE, PocketsphinxEngine
from realtime_cascade.audio.stt.whisper import WhisperEngine
from realtime_cascade.audio.tts.espeak import speak_here
from realtime_cascade.audio.tts.piper import PiperEngine
from realtime_cascade.audio.vad import EnergyVad, SileroVad, SpeechStarted, Vad

SENTENCES = (
    "Book a table for two at seven tonight.",
    "Do you have a table for two tomorrow evening?",
    "I would like a table for four on Friday.",
    "Can I get a table for three at eight?",
    "Is there anything free on Saturday night?",
    "We are six people, do you have room?",
    "Please cancel my reservation for tonight.",
    "Can you move my booking to half past seven?",
    "I need a table near the window.",
    "Do you have vegetarian options?",
    "What time do you open on Sunday?",
    "How late is the kitchen open?",
    "Is there parking nearby?",
    "Can we bring a birthday cake?",
    "I want to book for next Tuesday at noon.",
    "A table for one, please.",
    "Do you take reservations for lunch?",
    "My name is Anna and my number is five five five.",
    "Could you confirm my booking?",
    "Is the terrace open today?",
    "We will be a little late.",
    "Can I change the number of guests to five?",
    "Do you have a high chair for a baby?",
    "Is there a dress code?",
    "How much is the tasting menu?",
    "I am allergic to nuts.",
    "Can we sit outside if the weather is nice?",
    "Please book the same table as last time.",
    "What is the soup of the day?",
    "Do you have gluten free pasta?",
    "I would like to order a bottle of red wine.",
    "Is it possible to book the private room?",
    "We want to celebrate an anniversary.",
    "Can you recommend a dessert?",
    "The reservation is under the name Smith.",
    "Two adults and two children, please.",
    "Do you serve breakfast on weekends?",
    "Can I pay by card?",
    "Is the restaurant wheelchair accessible?",
    "Please add one more person to my booking.",
    "What is your address?",
    "Do you have a table available right now?",
    "I would like to speak to the manager.",
    "Can I book for eight people next month?",
    "Is there a corkage fee?",
    "Thank you, that is all for today.",
    "Could you repeat the time, please?",
    "We prefer a quiet table in the corner.",
    "Is the fish fresh today?",
    "Please send me a confirmation message.",
    "How long is the wait for a table?",
    "Do you have any tables left for Sunday lunch?",
)
BOOKING_PROMPT = (
    "A caller is booking a table at a restaurant: reservations, number of guests, "
    "dates and times, the menu, dietary needs."
)
SNR_DB = 15.0
NOISE_DBFS = -25.0

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _number(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    return " ".join(_ONES[int(d)] for d in str(n))


def normalise(text: str) -> list[str]:
    """Lower-case words, punctuation gone, numbers spelled out ("7:30" → "seven thirty")."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"(\d+):(\d\d)", lambda m: f"{m[1]} {m[2]}", text)
    text = re.sub(r"(\d+)\s*(am|pm|p\.m\.|a\.m\.)", r"\1 \2", text)
    text = re.sub(r"\d+", lambda m: " " + _number(int(m[0])) + " ", text)
    return re.findall(r"[a-z']+", text.replace("'", ""))


def edits(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            cur = min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
            prev, row[j] = row[j], cur
    return row[-1]


def with_noise(samples: Samples, snr_db: float, seed: int) -> Samples:
    speech = samples.astype(np.float64)
    loud = speech[np.abs(speech) > 300]
    power = float(np.mean(loud**2)) if len(loud) else 1.0
    noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(speech))
    return np.clip(np.rint(speech + noise), -32768, 32767).astype(np.int16)


def padded(samples: Samples) -> Samples:
    return np.concatenate(
        (np.zeros(300 * RATE // 1000, np.int16), samples, np.zeros(900 * RATE // 1000, np.int16))
    )


def test_set(log: Callable[[str], None]) -> dict[str, list[Samples]]:
    piper = PiperEngine(None, 1, (None, None))
    sets: dict[str, list[Samples]] = {"piper": [], "espeak": []}
    for text in SENTENCES:
        sets["piper"].append(np.concatenate([c.samples for c in piper.synthesize(text, None, 1)]))
        sets["espeak"].append(speak_here(text).samples)
    log(f"synthesised {len(SENTENCES)} sentences with piper and espeak")
    out: dict[str, list[Samples]] = {}
    for voice, clips in sets.items():
        out[f"{voice}/clean"] = [padded(c) for c in clips]
        out[f"{voice}/noise15"] = [
            padded(with_noise(c, SNR_DB, i)) for i, c in enumerate(clips)
        ]
    return out


def wer(
    transcribe: Callable[[Samples], str], clips: list[Samples]
) -> tuple[float, float, list[str]]:
    """(WER, CPU seconds per audio second, hypotheses)."""
    errors = words = 0
    cpu = audio = 0.0
    heard: list[str] = []
    for text, clip in zip(SENTENCES, clips, strict=True):
        t = time.process_time()
        hyp = transcribe(clip)
        cpu += time.process_time() - t
        audio += len(clip) / RATE
        ref = normalise(text)
        errors += edits(ref, normalise(hyp))
        words += len(ref)
        heard.append(hyp)
    return errors / words, cpu / audio, heard


def noise(kind: str, seconds: float = 10.0) -> Samples:
    n = int(seconds * RATE)
    if kind == "silence":
        return np.zeros(n, np.int16)
    rng = np.random.default_rng(7)
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 20.0)
    shaped = {"white": spectrum, "pink": spectrum / np.sqrt(f), "brown": spectrum / f}[kind]
    x = np.fft.irfft(shaped, n)
    x *= 32768 * 10 ** (NOISE_DBFS / 20) / np.std(x)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def vad_on(make: Callable[[], Vad], audio: Samples) -> tuple[int, float]:
    """(speech starts, share of 20 ms steps spent speaking) for ``audio`` fed in 20 ms appends."""
    vad = make()
    step = 20 * RATE // 1000
    starts = speaking = steps = 0
    for i in range(0, len(audio), step):
        starts += sum(isinstance(e, SpeechStarted) for e in vad.feed(audio[i : i + step]))
        speaking += vad.speaking
        steps += 1
    return starts, speaking / steps


def measure(log: Callable[[str], None] = print) -> dict[str, Any]:
    sets = test_set(log)
    whisper = WhisperEngine(None, "int8", 1, 1)
    whisper30 = WhisperEngine(None, "int8", 1, 1, short=False)  # short_window = false
    beam5 = WhisperEngine(None, "int8", 5, 1)
    base = WhisperEngine("base", "int8", 1, 1)  # [audio.stt] model = "base"
    sphinx = PocketsphinxEngine({"samprate": DECODER_RATE, "loglevel": "FATAL"}, 100.0)
    engines: dict[str, Callable[[Samples], str]] = {
        "whisper": lambda clip: whisper.transcribe(clip, None),
        "whisper 30 s window": lambda clip: whisper30.transcribe(clip, None),
        "whisper beam5": lambda clip: beam5.transcribe(clip, None),
        "whisper +prompt": lambda clip: whisper.transcribe(clip, BOOKING_PROMPT),
        "whisper base": lambda clip: base.transcribe(clip, None),
        "whisper base +prompt": lambda clip: base.transcribe(clip, BOOKING_PROMPT),
        "pocketsphinx": sphinx.transcribe,
    }
    stt: dict[str, Any] = {}
    for name, fn in engines.items():
        stt[name] = {}
        for variant, clips in sets.items():
            w, cpu, heard = wer(fn, clips)
            stt[name][variant] = {"wer": round(w, 4), "cpu_per_audio_s": round(cpu, 4),
                                  "example": heard[0]}  # fmt: skip
            log(f"{name:20} {variant:15} WER {w:6.1%}  CPU/audio-s {cpu:.3f}")
    vads: dict[str, Callable[[], Vad]] = {"silero": SileroVad, "energy": EnergyVad}
    vad: dict[str, Any] = {}
    lead = np.zeros(RATE, np.int16)
    for name, make in vads.items():
        cell: dict[str, Any] = {}
        for kind in ("silence", "white", "pink", "brown"):
            starts, share = vad_on(make, np.concatenate((lead, noise(kind))))
            cell[kind] = {"false_turns": starts, "false_speech": round(share, 4)}
        clean = sets["piper/clean"] + sets["espeak/clean"]
        cell["missed_utterances"] = sum(vad_on(make, c)[0] == 0 for c in clean)
        cell["utterances"] = len(clean)
        vad[name] = cell
        log(f"vad {name}: {cell}")
    return {"sentences": len(SENTENCES), "snr_db": SNR_DB, "noise_dbfs": NOISE_DBFS,
            "booking_prompt": BOOKING_PROMPT, "stt": stt, "vad": vad}  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    variants = list(next(iter(result["stt"].values())))
    lines = [
        f"WER on {result['sentences']} spoken requests per variant (noise: white, "
        f"{result['snr_db']:g} dB SNR); CPU-seconds per audio-second in brackets",
        "",
        "| recogniser | " + " | ".join(variants) + " |",
        "|---|" + "---:|" * len(variants),
    ]
    lines[2] += " clean, both voices |"
    lines[3] += "---:|"
    for name, cells in result["stt"].items():
        row = [f"{c['wer']:.1%} ({c['cpu_per_audio_s']:.2f})" for c in cells.values()]
        # the same sentences in each voice, so the same reference words: the mean is the WER
        # over all the clean recordings
        clean = [c["wer"] for v, c in cells.items() if v.endswith("/clean")]
        row.append(f"{sum(clean) / len(clean):.1%}")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    kinds = ("silence", "white", "pink", "brown")
    lines += [
        "",
        f"VAD on 10 s of noise at {result['noise_dbfs']:g} dBFS: false turns / share of time "
        "'speaking'; missed: recordings with no speech found",
        "",
        "| VAD | " + " | ".join(kinds) + " | missed |",
        "|---|" + "---:|" * (len(kinds) + 1),
    ]
    for name, cell in result["vad"].items():
        row = [f"{cell[k]['false_turns']} / {cell[k]['false_speech']:.0%}" for k in kinds]
        missed = f"{cell['missed_utterances']}/{cell['utterances']}"
        lines.append(f"| {name} | " + " | ".join(row) + f" | {missed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.voice_quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result here")
    p.add_argument("--from-json", default=None, metavar="PATH", help="print a saved result")
    args = p.parse_args(argv)
    if args.from_json:
        print(markdown(json.loads(Path(args.from_json).read_text())))
        return 0
    result = measure(lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
