"""Real logs are messy: -inf log-probabilities and groups that cannot be evaluated."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np
import pytest

from realtime_cascade.cli.eval import main
from realtime_cascade.eval.calibration import fit_logistic
from realtime_cascade.eval.deferral import evaluate_group
from realtime_cascade.eval.errors import LogFormatError
from realtime_cascade.eval.logs import group_rows, parse_rows, partition_groups, write_log
from realtime_cascade.eval.synthetic import SHIFTED, TRAIN_ONLY, synthetic_rows

HEADER = "query_idx,model,correct,raw_confidence,cost_usd,latency_ms,benchmark,split\n"


def _rows(text: str) -> list[str]:
    return (HEADER + text).splitlines(keepends=True)


def test_minus_inf_is_read_and_plus_inf_is_not() -> None:
    rows = parse_rows(_rows("1,a,0,-inf,1,1,x,\n1,b,1,-Infinity,1,1,x,\n"))
    assert rows[0].raw_confidence == -math.inf and rows[1].raw_confidence == -math.inf
    for bad in ("inf", "nan"):
        with pytest.raises(LogFormatError, match="must be finite"):
            parse_rows(_rows(f"1,a,0,{bad},1,1,x,\n"))
    with pytest.raises(LogFormatError, match="cost_usd must be finite"):
        parse_rows(_rows("1,a,0,-1,-inf,1,x,\n"))


def test_minus_inf_gets_the_lowest_probability() -> None:
    xs = [-0.1, -0.2, -1.0, -2.0, -math.inf, -0.05]
    ys = [True, True, False, False, False, True]
    fit = fit_logistic(xs, ys)
    assert fit.floor == pytest.approx(-3.0)  # one nat below the lowest finite value
    assert fit.slope > 0
    assert fit(-math.inf) == fit(-3.0) == fit(-50.0) < fit(-2.0)
    arr = fit.probabilities(np.array(xs))
    assert np.all(np.isfinite(arr)) and arr[4] == pytest.approx(fit(-math.inf))


def test_all_minus_inf_is_the_base_rate() -> None:
    fit = fit_logistic([-math.inf] * 4, [True, False, False, False])
    assert fit.slope == 0.0 and fit(-math.inf) == pytest.approx(1.5 / 5)


def test_minus_inf_defers_first_under_raw_confidence() -> None:
    # A is right exactly when its confidence is finite; -inf must sort below -5.
    text = ""
    for i in range(12):
        split = "train" if i < 8 else "test"
        lp = "-inf" if i % 4 == 0 else ("-5" if i % 4 == 1 else "-0.1")
        text += f"q{i},A,{0 if i % 4 == 0 else 1},{lp},1,10,x,{split}\n"
        text += f"q{i},B,1,-0.1,10,10,x,{split}\n"
    (group,) = group_rows(parse_rows(_rows(text)))
    r = evaluate_group(group, kind="raw", tradeoffs=False)
    op = r.comparisons[1].at_accuracy
    # Deferring only the -inf queries (1 in 4) reaches B's 100% at 1 + 10/4.
    assert op is not None and op.accuracy == 1.0
    assert op.mean_cost_usd == pytest.approx(3.5)


def test_a_bad_group_does_not_stop_the_others() -> None:
    text = (
        "1,a,1,-1,1,1,good,train\n1,b,1,-1,2,1,good,train\n"
        "2,a,0,-1,1,1,good,test\n2,b,1,-1,2,1,good,test\n"
        "3,a,1,-1,1,1,trainonly,train\n3,b,1,-1,2,1,trainonly,train\n"
        "4,a,1,-1,1,1,holes,\n"
        "4,b,1,-1,1,1,holes,\n5,a,1,-1,1,1,holes,\n"
    )
    groups, skipped = partition_groups(parse_rows(_rows(text)))
    assert [g.key.benchmark for g in groups] == ["good"]
    assert [(s.benchmark, s.reason.split(": ", 1)[1]) for s in skipped] == [
        ("holes", "query '5' has no row for model(s) 'b'"),
        ("trainonly", "every query is in split 'train'; need train and test"),
    ]


def _synthetic(tmp_path: Path, n: int = 80) -> Path:
    path = tmp_path / "synthetic.csv"
    write_log(path, synthetic_rows(n, seed=1))
    return path


def test_cli_evaluates_the_other_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _synthetic(tmp_path)
    assert "-inf" in path.read_text()
    argv = ["eval", "--log", str(path), "--json", "--bootstrap", "50", "--no-tune"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = msgspec.json.decode(captured.out)
    (log,) = out["logs"]
    assert len(log["groups"]) == 8  # four benchmarks by two chains
    assert [(s["benchmark"], s["chain"]) for s in log["skipped"]] == [(TRAIN_ONLY, "mixed")]
    assert f"skipped benchmark={TRAIN_ONLY} chain=mixed: every query is in split" in captured.err
    shifted = next(g for g in log["groups"] if g["benchmark"] == SHIFTED and g["chain"] == "mixed")
    # The generator makes this benchmark's test half harder: every model is flagged.
    assert len(shifted["warnings"]) == 5
    assert all(m["shift_z"] > 1 for m in shifted["models"])


def test_cli_exits_2_when_nothing_can_be_evaluated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "1,a,1,-1,1,1,x,train\n1,b,1,-1,2,1,x,train\n")
    assert main(["eval", "--log", str(path)]) == 2
    err = capsys.readouterr().err
    assert "skipped benchmark=x: every query is in split 'train'" in err
    assert "no group of the log(s) could be evaluated" in err


def test_routellm_as_a_log(tmp_path: Path) -> None:
    from realtime_cascade.eval.deferral import evaluate_group
    from realtime_cascade.eval.routellm import PRICES, STRONG, WEAK, log_rows

    evals = tmp_path / "routellm" / "evals"
    (evals / "mmlu" / "responses").mkdir(parents=True)
    (evals / "gsm8k").mkdir()
    head = f"prompt,{WEAK},{STRONG}\n"
    # Long prompts (with "sum") are where only the strong model is right.
    lines = [
        f'"q{i} {"sum of many numbers " * 5 if i % 3 == 0 else "hi"}",{i % 3 != 0},True\n'
        for i in range(40)
    ]
    (evals / "mmlu" / "responses" / "mmlu_toy.csv").write_text(head + "".join(lines))
    (evals / "gsm8k" / "gsm8k_responses.csv").write_text(head + "".join(lines[:30]))
    rows = log_rows(tmp_path, seed=0)
    assert len(rows) == 2 * (40 + 30)
    assert {r.benchmark for r in rows} == {"mmlu", "gsm8k"}
    weak = [r for r in rows if r.model == WEAK]
    strong = [r for r in rows if r.model == STRONG]
    assert all(r.raw_confidence <= 0 for r in weak) and all(r.raw_confidence == 0 for r in strong)
    assert strong[0].cost_usd / weak[0].cost_usd == pytest.approx(PRICES[STRONG] / PRICES[WEAK])
    assert sum(r.split == "train" for r in weak if r.benchmark == "mmlu") == 20
    groups, skipped = partition_groups(rows)
    assert not skipped
    report = evaluate_group(groups[1], resamples=20)
    assert report.benchmark == "mmlu" and report.tradeoff is not None
