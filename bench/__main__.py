"""``python -m bench``: latency, cost and quality of every policy, side by side, in one run.

    python -m bench                         # sessions 1, 50, 200; the whole booking suite
    python -m bench --quick --json out.json # a short run (well under 3 minutes on 2 cores)
    python -m bench --sessions 1,20 --policies cascade,strong-only

Starts the sim upstreams (light and strong, OpenAI-compatible HTTP), the server (its tiers on
them through the ``openai`` provider) and the bare baseline as subprocesses; plays the scenario
mix over N concurrent WebSocket sessions per policy; writes ``bench/results/latest.json``,
``latest.md`` (also printed) and the PNG plots. See ``bench/README.md`` for every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shlex
import sys
from pathlib import Path

from .client import policies
from .report import markdown, notes, plots, targets
from .run import Options, run
from .scenarios import load_mix

RESULTS = Path(__file__).resolve().parent / "results"

QUICK_SESSIONS = (1, 50)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,50,200, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("session counts must be >= 1")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"short run: sessions {','.join(map(str, QUICK_SESSIONS))}, the first "
        "2 turns of each conversation, 1 conversation for N=1",
    )
    p.add_argument(
        "--sessions",
        type=_ints,
        default=None,
        help="concurrent sessions per cell, comma-separated (default 1,50,200)",
    )
    p.add_argument(
        "--policies",
        default="",
        help="comma-separated subset of: " + ", ".join(p.name for p in policies(1)),
    )
    p.add_argument(
        "--mix",
        choices=["auto", "booking", "generic"],
        default="auto",
        help="scenario mix (auto: booking when realtime_cascade.demos.booking is there)",
    )
    p.add_argument(
        "--max-turns",
        type=int,
        default=None,
        help="play only the first K user turns of each conversation",
    )
    p.add_argument(
        "--upstream-clock",
        choices=["absolute", "relative"],
        default="absolute",
        help="absolute (default): the sim upstreams and the bare server send each token at "
        "start + its scheduled offset; relative: sim-upstream --clock relative, one sleep per "
        "gap, so lateness accumulates along a stream",
    )
    p.add_argument(
        "--http-client",
        choices=["aiohttp", "sdk"],
        default="aiohttp",
        help="the server's HTTP client for its openai tiers (aiohttp, the default; sdk: the "
        "openai SDK's httpx2 client), to compare them on the same load",
    )
    p.add_argument("--json", default=None, metavar="PATH", help="also write the result JSON here")
    p.add_argument(
        "--out",
        default=str(RESULTS),
        metavar="DIR",
        help="where latest.json, latest.md and the plots go (bench/results)",
    )
    p.add_argument(
        "--samples", action="store_true", help="keep the raw samples in the JSON (large)"
    )
    p.add_argument(
        "--soak",
        type=float,
        default=None,
        metavar="MINUTES",
        help="run the soak harness instead (python -m bench.soak) for MINUTES",
    )
    p.add_argument(
        "--voice",
        type=int,
        default=None,
        metavar="TURNS",
        help="measure voice-to-voice latency instead (python -m bench.voice): TURNS spoken "
        "turns per policy, p50/p95/p99 of end of speech -> first audio and its breakdown",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.soak is not None:
        try:
            from .soak import main as soak_main  # the soak harness (bench/soak.py)
        except ImportError:
            print("python -m bench: --soak needs bench/soak.py", file=sys.stderr)
            return 2
        soak_argv = ["--minutes", str(args.soak)]
        if args.sessions is not None:
            soak_argv += ["--sessions", str(max(args.sessions))]
        if args.json:
            soak_argv += ["--json", args.json]
        return soak_main(soak_argv)
    if args.voice is not None:
        from .voice import main as voice_main  # bench/voice.py

        voice_argv = ["--turns", str(args.voice)]
        if args.policies:
            voice_argv += ["--policies", args.policies]
        if args.json:
            voice_argv += ["--json", args.json]
        return voice_main(voice_argv)
    opts = Options(
        command=" ".join(["python -m bench", *(shlex.quote(a) for a in (argv or sys.argv[1:]))])
    )
    if args.quick:
        opts.quick = True
        opts.sessions = QUICK_SESSIONS
        opts.max_turns = 2
        opts.solo_conversations = 1
        opts.cancel_after_s = (0.08, 0.35)
        opts.ramp_s = 0.5
    if args.sessions is not None:
        opts.sessions = args.sessions
    if args.max_turns is not None:
        opts.max_turns = args.max_turns
    opts.http_client = args.http_client
    known = {p.name for p in policies(1)}
    chosen = tuple(x.strip() for x in args.policies.split(",") if x.strip())
    unknown = [x for x in chosen if x not in known]
    if unknown:
        print(
            f"python -m bench: unknown policies {unknown} (known: {sorted(known)})", file=sys.stderr
        )
        return 2
    opts.policies = chosen
    opts.clock = args.upstream_clock
    mix = load_mix(args.mix).truncated(opts.max_turns)

    loop_factory = None
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(run(mix, opts))

    result["targets"] = targets(result)
    result["notes"] = notes(result)
    samples = result.pop("samples")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = plots({**result, "samples": samples}, out)
    result["plots"] = [p.name for p in written]
    if args.samples:
        result["samples"] = samples
    text = json.dumps(result, indent=1, ensure_ascii=False)
    (out / "latest.json").write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(text + "\n")
    table = markdown(result)
    if written:
        table += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in written) + "\n"
    (out / "latest.md").write_text(table)
    print(table)
    if not written:
        print("(no plots: matplotlib is not installed; pip install matplotlib)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
