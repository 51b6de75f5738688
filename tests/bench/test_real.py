"""bench.real without models: the task set, its grading, the monitor feature, the report."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

from bench.real.__main__ import Fit, Run, min_quantile_lp, render, report
from bench.real.tasks import Expect, Task, grade, load
from realtime_cascade.core.params import Calibration, MonitorParams
from realtime_cascade.core.trace import AttemptTrace, TurnTrace


def test_the_task_set_has_enough_labelled_turns_of_each_kind() -> None:
    tasks = load()
    kinds = Counter(t.kind for t in tasks)
    assert len(tasks) >= 100
    assert kinds["fact"] >= 50 and kinds["tool"] >= 30 and kinds["info"] >= 10
    for t in tasks:
        assert t.expect.any or t.expect.tool, t.id
        assert t.tools == (t.kind in ("tool", "chat")), t.id


def test_grading_text_tools_and_no_tool() -> None:
    tasks = {t.id: t for t in load()}
    assert grade(tasks["fact-011"], "It is Canberra.", [])
    assert not grade(tasks["fact-011"], "Sydney, I think.", [])
    assert grade(tasks["fact-037"], "Its symbol is Na.", [])
    assert not grade(tasks["fact-037"], "It is nanotechnology.", [])  # \bNa\b, not "na" inside
    book = tasks["tool-027"]  # Rossi, 2026-03-20, 19:30, 2
    good = '{"name": "rossi", "date": "2026-03-20", "time": "19:30", "party_size": "2"}'
    assert grade(book, "", [("book_table", good)])
    assert not grade(book, "", [("check_availability", good)])
    assert not grade(book, "", [("book_table", good.replace("19:30", "7:30 pm"))])
    assert not grade(book, "", [("book_table", "{broken")])
    assert not grade(book, "Booked!", [])
    bye = tasks["chat-001"]
    assert grade(bye, "Goodbye, have a nice evening!", [])
    assert not grade(bye, "Goodbye!", [("find_booking", "{}")])


def test_the_feature_is_the_lowest_windowed_quantile_the_monitor_saw() -> None:
    monitor = MonitorParams(window=4, quantile=0.2, min_tokens=2)
    sure = [("a", -0.01, (-0.01, -5.0), False)] * 6
    assert min_quantile_lp(sure, monitor) == pytest.approx(-0.01)
    dip = [*sure[:3], ("b", -3.0, (-0.2, -3.0), False), *sure[:5]]
    assert min_quantile_lp(dip, monitor) == pytest.approx(-3.0)  # seen mid-stream, then gone
    assert min_quantile_lp(dip[:1], monitor) == pytest.approx(-0.01)  # fewer than min_tokens


def _trace(tier: int, ok_ms: float, *, escalated: bool = False, cost: float = 1e-6) -> TurnTrace:
    attempt = AttemptTrace(0, tier, "t", False, 0.0, 100.0, ok_ms, 100, 10, cost, "stop")
    return TurnTrace(
        "t", "q", 0.1, None, "completed", "", "x", (), (), tier, "t", escalated, cost,
        100.0 + tier * 100, None, ok_ms, (attempt,), (),
    )  # fmt: skip


def test_report_scores_preemption_against_the_light_tiers_own_answers() -> None:
    expect = msgspec.convert({"any": ["x"]}, type=Expect)
    tasks = [Task(f"t{i}", "fact", "qa", "q", expect) for i in range(4)]
    sure = [("a", -0.01, (), False)] * 5
    unsure = [("a", -4.0, (), False)] * 5
    light_ok = [True, False, True, False]
    records = []
    for t, ok in zip(tasks, light_ok, strict=True):
        records.append(Run(t.id, "light-only", ok, _trace(0, 500), sure if ok else unsure))
        # a one-tier profile: its tier is number 0
        records.append(Run(t.id, "strong-only", True, _trace(0, 900, cost=3e-6), sure))
    # the mid-stream cascade escalated t1 (light wrong) and t2 (light right)
    cascades = [
        Run(t.id, "mid-stream", i != 3, _trace(0, 600, escalated=i in (1, 2)))
        for i, t in enumerate(tasks)
    ]
    cal = Calibration(bias=4.0, w_quantile=2.0, w_min=0, w_entropy=0, w_complexity=0)
    fit = Fit({0: cal, 1: cal}, cal, 4, 0.5)
    rep = report(tasks, records, cascades, fit, 0.45, MonitorParams())
    post = rep["policies"]["post-hoc"]
    assert post["success"] == 1.0 and post["escalation_rate"] == 0.5
    assert post["preempt_precision"] == 1.0 and post["preempt_recall"] == 1.0
    assert post["cost_usd_per_turn"] == pytest.approx((4e-6 + 2 * 3e-6) / 4)
    mid = rep["policies"]["mid-stream"]
    assert mid["preempt_precision"] == 0.5 and mid["preempt_recall"] == 0.5
    assert rep["policies"]["light-only"]["success"] == 0.5
    assert "| post-hoc | 100.0% |" in render(rep)
