"""The ``eval`` subcommand end to end: text, JSON, exit statuses."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from realtime_cascade.cli.eval import main

from .test_deferral import HEADER, SPLIT_ROWS


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "log.csv"
    path.write_text(HEADER + "".join(",".join(map(str, r)) + "\n" for r in SPLIT_ROWS))
    return path


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--log", str(_write(tmp_path)), "--confidence", "raw", "--json"]) == 0
    out = msgspec.json.decode(capsys.readouterr().out)
    (group,) = out["logs"][0]["groups"]
    assert group["reference_model"] == "B"
    assert group["comparisons"][1]["at_accuracy"]["cost_saving"] == pytest.approx(0.15)
    assert "routellm" not in out


def test_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--log", str(_write(tmp_path)), "--confidence", "raw"]) == 0
    text = capsys.readouterr().out
    assert "train/test split; 8 queries, 4 held out" in text
    assert "A > B [defer lp<-0.2]" in text
    assert "15.0%" in text  # the saving against B


def test_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "1,A,yes,-1,1,1,\n")
    assert main(["eval", "--log", str(bad)]) == 2
    assert f"{bad}:2: correct must be 0 or 1" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert "give --log" in capsys.readouterr().err


def test_sim_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sim.csv"
    assert main(["eval", "--sim-log", str(path), "--n", "40", "--json"]) == 0
    captured = capsys.readouterr()
    assert path.exists() and "wrote 40 requests" in captured.err
    out = msgspec.json.decode(captured.out)
    (group,) = out["logs"][0]["groups"]
    assert group["benchmark"] == "sim" and group["n_queries"] == 40
    assert [m["name"] for m in group["models"]] == ["light", "strong"]
