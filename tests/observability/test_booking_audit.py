"""Acceptance: the booking demo's run leaves an audit log whose summary matches the demo's own.

`realtime-cascade demo` plays the booking suite over WebSocket against an in-process server under
three policies (cascade, light-only, strong-only). With REALTIME_CASCADE_AUDIT set, that server
writes one line per response; `traces summarize --by tiers` splits them by the tiers each session
ran with, and per group its *user turns* (responses answering the same user message) are the
demo's turns.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from realtime_cascade.cli.main import main as cli_main
from realtime_cascade.cli.traces import add_traces_parser
from realtime_cascade.observe.config import AUDIT_ENV

GROUPS = {"cascade": "light..strong", "light_only": "light..light", "strong_only": "strong..strong"}


def print_summary(path: Path) -> None:
    """`realtime-cascade traces summarize PATH --json --by tiers`, printed to stdout."""
    parser = argparse.ArgumentParser()
    add_traces_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["traces", "summarize", str(path), "--json", "--by", "tiers"])
    assert args.func(args) == 0


def test_demo_summary_matches_its_audit_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.jsonl"
    monkeypatch.setenv(AUDIT_ENV, str(log))
    assert cli_main(["demo", "--json"]) == 0
    demo: dict[str, Any] = json.loads(capsys.readouterr().out)
    print_summary(log)
    audit: dict[str, Any] = json.loads(capsys.readouterr().out)

    rows = {"cascade": demo, "light_only": demo["light_only"], "strong_only": demo["strong_only"]}
    assert set(audit["groups"]) == set(GROUPS.values())
    for policy, group in GROUPS.items():
        ours, theirs = audit["groups"][group]["user_turns"], rows[policy]
        assert ours["turns"] == theirs["turns"], policy
        assert ours["escalation_rate"] == theirs["escalation_rate"], policy
        assert ours["cost_usd"] == pytest.approx(theirs["cost_usd"], abs=1e-6), policy
        assert ours["responses_per_turn"] == theirs["steps_per_turn"], policy
    everything = audit["user_turns"]
    assert everything["turns"] == sum(r["turns"] for r in rows.values())
    assert everything["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows.values()))
    # the cascade escalated; the single-tier policies could not
    cascade = audit["groups"]["light..strong"]
    assert cascade["escalations"]["turns"] > 0
    assert audit["groups"]["light..light"]["escalations"]["turns"] == 0
    assert cascade["stayed_on_first_tier"]["tier"] == "light"
    assert audit["records"] == audit["turns"]  # every response left a trace
