"""Reading logs: values are checked per line, groups per query, with typed errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime_cascade.eval.errors import LogContentError, LogFormatError
from realtime_cascade.eval.logs import LogRow, group_rows, parse_rows, read_log, write_log

HEADER = "query_idx,model,correct,raw_confidence,cost_usd,latency_ms"


def _parse(text: str) -> list[LogRow]:
    return parse_rows(text.splitlines(keepends=True), "log.csv")


def test_reads_optional_columns_and_flags() -> None:
    rows = _parse(
        "model,query_idx,correct,raw_confidence,cost_usd,latency_ms,benchmark,chain,split,note\n"
        "m1,7,true,-0.5,0.001,12,gsm8k,c1,test,anything\n"
        "m2,7,0,0,0,0,gsm8k,c1,test,\n"
    )
    assert rows[0] == LogRow("7", "m1", True, -0.5, 0.001, 12.0, "gsm8k", "c1", "test")
    assert rows[1].correct is False and rows[1].raw_confidence == 0.0


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty file"),
        ("query_idx,model,correct\n", 1, "missing column(s): raw_confidence, cost_usd"),
        (HEADER + "\n", 2, "no data rows"),
        (HEADER + "\n1,m,2,-0.1,0.1,5\n", 2, "correct must be 0 or 1, got '2'"),
        (HEADER + "\n1,m,1,0.3,0.1,5\n", 2, "must be a log-probability (<= 0)"),
        (HEADER + "\n1,m,1,abc,0.1,5\n", 2, "raw_confidence is not a number: 'abc'"),
        (HEADER + "\n1,m,1,nan,0.1,5\n", 2, "must be finite"),
        (HEADER + "\n1,m,1,-1,-0.1,5\n", 2, "cost_usd must be >= 0"),
        (HEADER + "\n1,m,1,-1,0.1,5\n1,m,1,-1,0.1\n", 3, "empty latency_ms"),
        (HEADER + "\n1,m,1,-1,0.1,5,extra\n", 2, "more cells than header columns"),
        (HEADER + ",split\n1,m,1,-1,0.1,5,dev\n", 2, "split must be train, test or empty"),
    ],
)
def test_format_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(LogFormatError) as info:
        _parse(text)
    assert info.value.line == line
    assert message in str(info.value)
    assert str(info.value).startswith(f"log.csv:{line}: ")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1,a,1,-1,1,1,\n1,b,1,-1,1,1,\n2,a,1,-1,1,1,\n", "query '2' has no row for model(s) 'b'"),
        ("1,a,1,-1,1,1,\n1,a,0,-1,1,1,\n1,b,1,-1,1,1,\n", "two rows for model 'a'"),
        ("1,a,1,-1,1,1,train\n1,b,1,-1,1,1,test\n", "has rows in split 'train' and 'test'"),
        (
            "1,a,1,-1,1,1,train\n1,b,1,-1,1,1,train\n2,a,1,-1,1,1,\n2,b,1,-1,1,1,\n",
            "some queries have a split and some do not",
        ),
        ("1,a,1,-1,1,1,train\n1,b,1,-1,1,1,train\n", "every query is in split 'train'"),
        ("1,a,1,-1,1,1,\n2,a,1,-1,1,1,\n", "one model ('a')"),
    ],
)
def test_content_errors(body: str, message: str) -> None:
    with pytest.raises(LogContentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        group_rows(_parse(HEADER + ",split\n" + body))


def test_groups_by_benchmark_and_chain_and_orders_models_by_cost() -> None:
    rows = _parse(
        HEADER + ",benchmark,chain\n"
        "1,big,1,-1,5,1,x,\n1,small,0,-1,1,1,x,\n"
        "1,big,1,-1,5,1,y,c\n1,small,1,-1,9,1,y,c\n"
    )
    groups = group_rows(rows)
    assert [g.key.label() for g in groups] == ["benchmark=x", "benchmark=y chain=c"]
    assert groups[0].models == ("small", "big")
    assert groups[1].models == ("big", "small")  # by mean cost, not by name
    assert groups[0].correct == ((False,), (True,))


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    rows = [
        LogRow("1", "a", True, -0.123456789012345, 1.5e-7, 12.25, "b", "c", "train"),
        LogRow("1", "b", False, -3.0, 2e-5, 400.0, "b", "c", "train"),
    ]
    path = tmp_path / "log.csv"
    write_log(path, rows)
    assert read_log(path) == rows


def test_unreadable_file_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="cannot read"):
        read_log(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(LogFormatError, match="not UTF-8"):
        read_log(bad)
