"""A newcomer's first hour, run as they would: help for everything, one-line errors with the fix,
Ctrl-C that stops cleanly, exit statuses a script can trust, output that shows progress."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from realtime_cascade.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "realtime_cascade"]


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_command_says_what_it_is_for_and_every_option_has_help() -> None:
    parsers = list(_parsers(build_parser()))
    assert len(parsers) >= 11  # the root, 8 commands, traces summarize, policy check
    for parser in parsers:
        desc = parser.description or ""
        assert desc and desc[0].isupper(), parser.prog
        # user-facing text, not the module's docstring for developers
        assert "``" not in desc and "Wired" not in desc and "func" not in desc, parser.prog
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{parser.prog} {action.option_strings or action.dest}"


def test_help_names_the_first_steps() -> None:
    out = _cli("--help")
    assert out.returncode == 0
    assert "first steps:" in out.stdout and "realtime-cascade serve" in out.stdout
    assert "the command line" not in out.stdout


def _busy_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def test_serve_on_a_busy_port_is_one_line_and_status_2() -> None:
    sock, port = _busy_port()
    with sock:
        out = _cli("serve", "--port", str(port))
    assert out.returncode == 2
    assert (
        out.stderr == f"realtime-cascade: port {port} is in use: pass --port (0: any free port)\n"
    )


def test_sim_upstream_on_a_busy_port_is_one_line_and_status_2() -> None:
    sock, port = _busy_port()
    with sock:
        out = _cli("sim-upstream", "--port", str(port))
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == f"sim-upstream: port {port} is in use: pass --port"
    assert "Traceback" not in out.stderr


def test_serve_prints_the_browser_url_and_it_answers() -> None:
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        browser = [ln for ln in lines if "browser console at" in ln]
        assert len(browser) == 1, lines
        url = browser[0].split(" at ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_ctrl_c_during_demo_stops_cleanly() -> None:
    proc = subprocess.Popen(
        [*CLI, "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT, and a child inherits that: make sure this
        # one gets Python's default (KeyboardInterrupt), as a terminal's foreground job does.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    started = proc.stderr.readline()
    first = proc.stderr.readline()  # the first finished conversation: the demo is running
    assert "conversations x 3 policies" in started and "[ 1/51]" in first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err and err.splitlines()[-1] == "realtime-cascade: interrupted"
    assert out == ""  # no half transcript


def test_demo_shows_progress_and_ends_with_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from realtime_cascade.demos.booking import demo

    monkeypatch.setattr(demo, "SUITE", demo.SUITE[:2])
    assert main(["demo", "--inprocess"]) == 0
    out, err = capsys.readouterr()
    progress = err.splitlines()
    assert progress[0] == "demo: 2 conversations x 3 policies, in-process (Ctrl-C stops)"
    assert len(progress) == 1 + 6 and progress[-1].startswith("demo: [6/6] ")
    ids = {c.id for c in demo.SUITE}
    assert all(any(i in ln for i in ids) and "turns succeeded" in ln for ln in progress[1:])
    table = out.rstrip("\n").splitlines()[-5:]
    assert table[0].split()[:3] == ["policy", "turns", "success"]
    assert [row.split()[0] for row in table[2:]] == ["cascade", "light-only", "strong-only"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ask_exits_nonzero_when_the_turn_fails(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"  # nothing listens: connection refused
    config = tmp_path / "down.toml"
    config.write_text(
        "".join(
            f'[[profiles.default.tiers]]\nname = "{n}"\nprice_in = 2.5\nprice_out = 10.0\n'
            f'provider = {{ kind = "openai", base_url = "{url}", model = "m", api_key_env = "" }}\n'
            for n in ("light", "strong")
        )
    )
    out = _cli("ask", "--json", "--config", str(config), "hello")
    assert out.returncode == 1
    summary = json.loads(out.stdout)  # the summary is still printed
    assert summary["status"] == "failed"
    # both tiers were tried and neither request reached an upstream: nothing was billed
    assert summary["cost_usd"] == 0.0
    assert [(a["tier_name"], a["input_tokens"]) for a in summary["tiers"]] == [
        ("light", 0),
        ("strong", 0),
    ]
    assert out.stderr.startswith("realtime-cascade: the turn ended failed: ")
    assert "connection" in out.stderr and "Traceback" not in out.stderr


def test_missing_key_env_names_the_tier_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_FOR_TESTS", raising=False)
    config = tmp_path / "nokey.toml"
    config.write_text(
        '[[profiles.default.tiers]]\nname = "light"\nprovider = { kind = "openai", '
        'base_url = "http://127.0.0.1:9/v1", model = "m", api_key_env = "NO_SUCH_KEY_FOR_TESTS" }\n'
    )
    assert main(["ask", "--config", str(config), "hi"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "realtime-cascade: config error: tier 'light': environment variable NO_SUCH_KEY_FOR_TESTS"
        ' is not set (set api_key_env = "" for an endpoint that needs no key)\n'
    )


def test_the_documented_config_error_is_the_real_one(tmp_path: Path) -> None:
    # docs/configuration.md shows a bad config and the error it gives: run exactly that.
    doc = (ROOT / "docs" / "configuration.md").read_text()
    block = doc.split("```console\n$ cat bad.toml\n", 1)[1].split("```", 1)[0]
    toml, rest = block.split("$ realtime-cascade ask --config bad.toml hi\n", 1)
    (tmp_path / "bad.toml").write_text(toml)
    out = subprocess.run(
        [*CLI, "ask", "--config", "bad.toml", "hi"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr == rest


def test_schema_without_out_prints_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[bytes]
) -> None:
    from realtime_cascade.wire.schema import schemas

    monkeypatch.chdir(tmp_path)
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {name: json.loads(data) for name, data in schemas().items()}
    assert list(tmp_path.iterdir()) == []


def test_a_packaged_config_is_named_not_pathed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no demos/ folder here, as after `pip install`
    assert main(["ask", "--config", "booking", "--json", "Cancel booking B-1001."]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "completed"
    assert main(["ask", "--config", "bookings", "hi"]) == 2
    assert capsys.readouterr().err == (
        "realtime-cascade: config error: bookings: cannot read: No such file or directory "
        "(packaged configs: booking, booking-local)\n"
    )
