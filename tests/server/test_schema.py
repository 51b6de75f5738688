"""protocols/schema is generated from the wire structs; it must not drift."""

from __future__ import annotations

from pathlib import Path

from realtime_cascade.wire.schema import schemas, write_schema

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "protocols" / "schema"


def test_checked_in_schema_is_current() -> None:
    for name, data in schemas().items():
        path = SCHEMA_DIR / name
        assert path.exists() and path.read_bytes() == data, (
            f"{path} is out of date: run `realtime-cascade schema --out protocols/schema` "
            "(or `realtime-cascade schema --out protocols/schema`)"
        )
    assert {p.name for p in SCHEMA_DIR.glob("*.json")} == set(schemas())


def test_write_schema(tmp_path: Path) -> None:
    written = write_schema(tmp_path / "out")
    assert sorted(p.name for p in written) == ["client-events.json", "server-events.json"]
    text = (tmp_path / "out" / "server-events.json").read_text()
    for kind in ("cascade.decision", "cascade.handoff", "cascade.trace", "response.done"):
        assert f'"{kind}"' in text


def test_descriptions_do_not_depend_on_docstring_dedenting() -> None:
    # Python 3.13 strips a docstring's common indentation at compile time, 3.11 and 3.12 keep
    # it: the same source gives both forms, and the schema must come out the same for each.
    import msgspec

    from realtime_cascade.wire.schema import _normalised

    class Event(msgspec.Struct):
        type: str

    forms = [
        "First line.\n\n    Continued, indented.\n      Nested.\n    ",
        "First line.\n\nContinued, indented.\n  Nested.\n",
    ]
    out = []
    for doc in forms:
        Event.__doc__ = doc
        out.append(_normalised(msgspec.json.schema(Event)))
    assert out[0] == out[1]
    (desc,) = {d["description"] for d in out[0]["$defs"].values()}
    assert desc == "First line.\n\nContinued, indented.\n  Nested."
    # and nothing checked in or generated carries a docstring's indentation
    for data in schemas().values():
        assert b"\\n    " not in data
