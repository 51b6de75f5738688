"""Bad input, generated: Hypothesis strategies for client events drawn from the protocol's JSON
Schema (``protocols/schema/client-events.json``), mutations of those and of the golden
transcripts' client events, and the frames no client should send (random bytes, invalid UTF-8,
deep nesting, huge strings, invalid base64 audio).

Used by the CI fuzz tests (``tests/reliability/test_fuzz.py``, bounded ``max_examples``) and by
``bench.bad_input`` (the same generators against a live server, with the figures).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "protocols" / "schema" / "client-events.json"
GOLDEN_DIR = ROOT / "protocols" / "golden"

Json = Any

# Ids come from a small pool, so events refer to each other (retrieve what was created,
# answer a call that exists, cancel the running response) as often as they miss.
ID_POOL = ("item_a", "item_b", "item_c", "call_a", "call_b", "root", "resp_x", "")
# What a server with :func:`counting_ids` assigns: references to them hit its own items.
SERVER_IDS = (*(f"srv_item_{i}" for i in range(1, 9)), "srv_resp_1", "srv_resp_2")
_REF_FIELDS = {"item_id", "previous_item_id", "call_id", "response_id"}
_TIERS = (0, 1, 2, -1, "light", "strong", "nope")


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def golden_client_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for path in sorted(GOLDEN_DIR.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                if "client" in record:
                    events.append(record["client"])
    return events


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Json]:
    """Any JSON value, small."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=max_leaves,
    )


def counting_ids() -> Callable[[str], str]:
    """An id factory for a session under test: ``srv_item_1``, ``srv_resp_1``, …"""
    counts: dict[str, int] = {}

    def ids(prefix: str) -> str:
        counts[prefix] = counts.get(prefix, 0) + 1
        return f"srv_{prefix}_{counts[prefix]}"

    return ids


def _text_for(name: str) -> st.SearchStrategy[str]:
    if name in _REF_FIELDS:
        return st.sampled_from(ID_POOL + SERVER_IDS) | st.text(max_size=12)
    if name in ("id", "event_id"):
        return st.sampled_from(ID_POOL) | st.text(max_size=12)
    if name == "text":
        return st.sampled_from(["Book a table for two at 7pm.", "hi", ""]) | st.text(max_size=40)
    return st.text(max_size=24)


class SchemaStrategies:
    """Strategies for the values a JSON Schema (2020-12, the subset msgspec writes) allows."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._defs: dict[str, Any] = schema.get("$defs", {})
        self._cache: dict[str, st.SearchStrategy[Json]] = {}

    def events(self) -> st.SearchStrategy[dict[str, Any]]:
        return self.of(self.schema, "")

    def of(self, node: dict[str, Any], name: str) -> st.SearchStrategy[Json]:
        if "$ref" in node:
            ref = node["$ref"].rsplit("/", 1)[-1]
            if ref not in self._cache:
                # deferred: definitions may refer to each other
                self._cache[ref] = st.deferred(lambda: self.of(self._defs[ref], name))
            return self._cache[ref]
        if "enum" in node:
            return st.sampled_from(node["enum"])
        if "const" in node:
            return st.just(node["const"])
        if "anyOf" in node:
            return st.one_of([self.of(s, name) for s in node["anyOf"]])
        if name in ("first_tier", "max_tier"):
            return st.sampled_from(_TIERS)
        kind = node.get("type")
        if isinstance(kind, list):
            return st.one_of([self.of({**node, "type": k}, name) for k in kind])
        match kind:
            case "object":
                return self._object(node)
            case "array":
                items = node.get("items", {})
                return st.lists(self.of(items, name) if items else json_values(), max_size=3)
            case "string":
                return _text_for(name)
            case "integer":
                return st.integers(-3, 2000) | st.integers()
            case "number":
                return st.floats(-10.0, 30000.0, allow_nan=False) | st.sampled_from([0.0, 1.0])
            case "boolean":
                return st.booleans()
            case "null":
                return st.none()
        return json_values()

    def _object(self, node: dict[str, Any]) -> st.SearchStrategy[Json]:
        props: dict[str, Any] = node.get("properties", {})
        if not props:
            extra = node.get("additionalProperties")
            values = self.of(extra, "") if isinstance(extra, dict) else json_values(4)
            return st.dictionaries(st.text(max_size=8), values, max_size=3)
        required = set(node.get("required", ()))
        req = {k: self.of(v, k) for k, v in props.items() if k in required}
        opt = {k: self.of(v, k) for k, v in props.items() if k not in required}
        return st.fixed_dictionaries(req, optional=opt)


_MUTATIONS = (
    "drop_key",
    "retype_value",
    "unknown_field",
    "unknown_type",
    "wrap_array",
    "nest_deep",
    "huge_string",
    "null_everything",
)


def mutate(event: dict[str, Any]) -> st.SearchStrategy[Json]:
    """One structural mutation of ``event`` (a JSON object)."""

    def paths(value: Json, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield (*prefix, k)
                yield from paths(v, (*prefix, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield (*prefix, i)
                yield from paths(v, (*prefix, i))

    all_paths = list(paths(event))

    def with_value(path: tuple[Any, ...], new: Json, *, delete: bool = False) -> Json:
        copy = json.loads(json.dumps(event))
        target = copy
        for p in path[:-1]:
            target = target[p]
        if delete:
            del target[path[-1]]
        else:
            target[path[-1]] = new
        return copy

    @st.composite
    def build(draw: st.DrawFn) -> Json:
        how = draw(st.sampled_from(_MUTATIONS))
        path = draw(st.sampled_from(all_paths)) if all_paths else None
        if how == "drop_key" and path is not None:
            return with_value(path, None, delete=True)
        if how == "retype_value" and path is not None:
            return with_value(path, draw(json_values(4)))
        if how == "unknown_type":
            return {**event, "type": draw(st.text(max_size=30))}
        if how == "wrap_array":
            return [event]
        if how == "nest_deep":
            # (deeper ones are built as text: see bad_frames; json.dumps would recurse)
            depth = draw(st.sampled_from([20, 300]))
            deep: Json = 1
            for _ in range(depth):
                deep = {"a": deep}
            return {**event, "extra": deep}
        if how == "huge_string" and path is not None:
            return with_value(path, "x" * draw(st.sampled_from([10_000, 200_000])))
        if how == "null_everything":
            return {k: (v if k == "type" else None) for k, v in event.items()}
        return {**event, draw(st.text(min_size=1, max_size=8)): draw(json_values(4))}

    return build()


def frame_mutations(frame: str) -> st.SearchStrategy[str]:
    """Byte-level damage to a serialized event: truncation, a flipped character, garbage."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        how = draw(st.sampled_from(["truncate", "flip", "splice", "repeat"]))
        if not frame:
            return draw(st.text(max_size=20))
        at = draw(st.integers(0, len(frame) - 1))
        if how == "truncate":
            return frame[:at]
        if how == "flip":
            return frame[:at] + draw(st.characters()) + frame[at + 1 :]
        if how == "splice":
            return frame[:at] + draw(st.text(max_size=10)) + frame[at:]
        return frame * draw(st.integers(2, 3))

    return build()


def bad_frames() -> st.SearchStrategy[str | bytes]:
    """Frames that are not client events at all."""
    return (
        st.sampled_from([950, 2000, 100_000]).map(deep)
        | st.sampled_from([5000, 200_000]).map(lambda n: "[" * n + "]" * n)
        | st.binary(max_size=200)
        | st.text(max_size=200)
        | json_values().map(json.dumps)
        | st.sampled_from(
            [
                "",
                "null",
                "[]",
                "{}",
                '{"type": null}',
                '{"type": "session.update", "session": []}',
                '{"type": "input_audio_buffer.append", "audio": "%%%not base64%%%"}',
                '{"type": "conversation.item.truncate", "item_id": "a", "content_index": '
                + "9" * 400
                + ', "audio_end_ms": 0}',
                '{"type": "response.create", "response": {"max_output_tokens": -5}}',
                '{"type": "conversation.item.create", "item": {"type": "message", '
                '"role": "user", "content": [{"type": "input_text", "text": "\\ud800"}]}}',
            ]
        )
    )


def deep(depth: int, inner: str = "1") -> str:
    """A client event whose ``session.audio`` nests ``depth`` objects deep."""
    return (
        '{"type": "session.update", "event_id": "deep", "session": {"audio": '
        + '{"a": ' * depth
        + inner
        + "}" * depth
        + "}}"
    )


def sample(strategy: st.SearchStrategy[Any], n: int, seed_value: int = 0) -> list[Any]:
    """``n`` examples of ``strategy``, reproducibly (for the bench, outside a test)."""
    out: list[Any] = []

    @settings(
        max_examples=n,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_value)
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


def categories(schema: dict[str, Any]) -> dict[str, st.SearchStrategy[Any]]:
    """The bad-input categories, by name: each a strategy of frames (str or bytes)."""
    events = SchemaStrategies(schema).events()
    golden = golden_client_events()
    golden_st = st.sampled_from(golden)
    dumps: Callable[[Any], str] = json.dumps
    return {
        "schema events": events.map(dumps),
        "schema mutations": events.flatmap(mutate).map(dumps),
        "golden mutations": golden_st.flatmap(mutate).map(dumps),
        "golden byte damage": golden_st.map(dumps).flatmap(frame_mutations),
        "random frames": bad_frames(),
    }
