"""bench.request_cost runs and compares like with like: the old SDK path and ours send the
same request (same body bytes) and read the same reply."""

from __future__ import annotations

import json

import httpx2
import pytest

from bench import request_cost

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_conversations_have_the_asked_size_and_a_tool_round_trip() -> None:
    for n in (1, 2, 5, 18):
        messages = request_cost.conversation(n)
        assert len(messages) == n and messages[0].role == "system"
    roles = [m.role for m in request_cost.conversation(8)]
    assert "tool" in roles and roles[roles.index("tool") - 1] == "assistant"


async def test_the_sdk_path_and_ours_send_the_same_body() -> None:
    sent: list[httpx2.Request] = []
    inner = request_cost.transport()

    async def record(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return await inner.handle_async_request(request)

    request = request_cost.requests([8])[8]
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(record)) as http:
        paths = request_cost.paths(http, request)
        assert await paths["sdk"]() == 2
        assert await paths["ours"]() == 2
        assert await paths["floor"]() == 2
    sdk, ours, floor = sent
    assert sdk.content == ours.content == floor.content
    assert json.loads(ours.content)["tools"]


def test_main_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert request_cost.main(["--messages", "2", "--rounds", "1", "--batch", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (row,) = result["sizes"]
    assert row["messages"] == 2
    assert set(row["us_per_request"]) == {"sdk", "ours", "floor", "encode", "transform"}
