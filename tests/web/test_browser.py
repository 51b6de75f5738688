"""The browser front end (demos/web), driven in Debian's headless Chromium through Playwright.

Keyboard only, as a person would: Tab to Connect, Enter, type, Enter. What is checked comes from
two sides — the page (transcript, cascade panel) and the WebSocket frames the page received —
so the panel is shown to say what the server said.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Page

HARD = (
    "Move my Thursday flight to the earliest Friday option, keep my aisle seat, and apply my "
    "voucher unless the fare goes up."
)
EASY = "Book a table for two at 7pm tonight."
TURN_TIMEOUT_MS = 15_000

# A speech synthesiser that "speaks" each utterance in UTTERANCE_MS and records what it was given
# and what it finished: headless Chromium has no voices (every utterance fails).
FAKE_TTS = """
(() => {
  const UTTERANCE_MS = 800;
  const tts = window.__tts = {queued: [], ended: [], endedAtCancel: null};
  let current = null, timer = null;
  const queue = [];
  const next = () => {
    current = queue.shift() || null;
    if (!current) return;
    if (current.onstart) current.onstart({});
    timer = setTimeout(() => {
      tts.ended.push(current.text);
      const u = current;
      if (u.onend) u.onend({});
      next();
    }, UTTERANCE_MS);
  };
  const fake = {
    get speaking() { return current !== null; },
    get pending() { return queue.length > 0; },
    paused: false,
    getVoices: () => [],
    speak(u) { tts.queued.push(u.text); queue.push(u); if (!current) next(); },
    cancel() {
      tts.endedAtCancel = [...tts.ended];
      clearTimeout(timer);
      const dropped = current ? [current, ...queue] : [...queue];
      current = null; queue.length = 0;
      dropped.forEach((u, i) => u.onerror && u.onerror({error: i ? "canceled" : "interrupted"}));
    },
    pause() {}, resume() {},
    addEventListener() {}, removeEventListener() {},
  };
  Object.defineProperty(window, "speechSynthesis", {value: fake, configurable: true});
})();
"""


def expect(*args: Any, **kwargs: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(*args, **kwargs)


def record_frames(page: Page, sent: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every server event the page's WebSocket receives, decoded, in order (and, into ``sent``,
    every client event it sends)."""
    frames: list[dict[str, Any]] = []

    def on_ws(ws: Any) -> None:
        ws.on("framereceived", lambda payload: frames.append(json.loads(payload)))
        if sent is not None:
            ws.on("framesent", lambda payload: sent.append(json.loads(payload)))

    page.on("websocket", on_ws)
    return frames


def focused_testid(page: Page) -> str | None:
    value = page.evaluate("() => document.activeElement?.dataset?.testid ?? null")
    return value if isinstance(value, str) else None


def tab_to(page: Page, testid: str, limit: int = 25) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused_testid(page) == testid:
            return
    raise AssertionError(f"Tab never reached [data-testid={testid}]")


def open_and_connect(page: Page, base_url: str, profile: str = "default") -> None:
    page.goto(base_url)
    expect(page.get_by_label("Server URL")).to_have_value(
        re.compile(r"^ws://127\.0\.0\.1:\d+/v1/realtime\?model=default$")
    )
    if profile != "default":
        tab_to(page, "model")
        page.keyboard.press("ControlOrMeta+a")
        page.keyboard.type(profile)
    tab_to(page, "connect")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "connected")
    expect(page.get_by_test_id("status")).to_contain_text(profile)
    expect(page.get_by_test_id("ladder")).to_have_text("light → strong")
    expect(page.get_by_label("Message")).to_be_focused()


def watch_assistant_text(page: Page) -> None:
    """Record each length the newest assistant text takes, as the DOM changes."""
    page.evaluate(
        """() => {
        window.__lengths = [];
        const t = document.getElementById("transcript");
        new MutationObserver(() => {
            const all = t.querySelectorAll("[data-testid=assistant-text]");
            if (!all.length) return;
            const n = all[all.length - 1].textContent.length, a = window.__lengths;
            if (!a.length || a[a.length - 1] !== n) a.push(n);
        }).observe(t, {subtree: true, childList: true, characterData: true});
    }"""
    )


def ask(page: Page, text: str) -> Any:
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("user-message").last).to_have_text(re.compile(re.escape(text)))
    return page.get_by_test_id("assistant-message").last


def of_type(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("type") == kind]


def test_hard_request_streams_and_hands_off(page: Page, live_server: str, output_dir: Path) -> None:
    frames = record_frames(page)
    open_and_connect(page, live_server)
    watch_assistant_text(page)
    reply = ask(page, HARD)
    expect(reply).to_have_attribute("data-status", "completed", timeout=TURN_TIMEOUT_MS)

    # Streamed: the text grew delta by delta in the page, as the deltas arrived.
    deltas = of_type(frames, "response.output_text.delta")
    assert len(deltas) >= 5, deltas
    assert reply.get_attribute("data-deltas") == str(len(deltas))
    lengths = page.evaluate("window.__lengths")
    assert len(lengths) >= 5 and lengths == sorted(lengths), lengths

    # The decision panel shows the preemption of light and the handoff light → strong.
    panel = page.get_by_test_id("decisions")
    expect(panel.locator("[data-kind=preempt][data-tier=light]")).to_have_count(1)
    expect(panel.locator("[data-kind=preempt] .tiers")).to_have_text("light → strong")
    expect(panel.locator("[data-kind=accept][data-tier=strong]")).to_have_count(1)
    expect(page.get_by_test_id("tier-path")).to_have_text("light → strong")
    expect(page.get_by_test_id("handoff")).to_contain_text("light → strong")
    expect(page.get_by_test_id("handoff-gap")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.get_by_test_id("first-text-client")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.get_by_test_id("first-text-server")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.get_by_test_id("cost")).to_contain_text(re.compile(r"\$0\.0*[1-9]"))

    # The final text begins with what light released before the handoff.
    (handoff,) = of_type(frames, "cascade.handoff")
    (trace,) = of_type(frames, "cascade.trace")
    segments = reply.get_by_test_id("segment")
    expect(segments).to_have_count(2)
    assert segments.first.get_attribute("data-tier") == "light"
    assert segments.last.get_attribute("data-tier") == "strong"
    before = segments.first.text_content() or ""
    final = reply.get_by_test_id("assistant-text").text_content() or ""
    assert before.strip() and len(before) == handoff["released_chars"], (before, handoff)
    assert final.startswith(before) and len(final) > len(before)
    assert final == trace["trace"]["text"]

    shot = output_dir / "hard-request.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")


def test_easy_request_stays_on_light(page: Page, live_server: str, output_dir: Path) -> None:
    frames = record_frames(page)
    open_and_connect(page, live_server)
    reply = ask(page, EASY)
    expect(reply).to_have_attribute("data-status", "completed", timeout=TURN_TIMEOUT_MS)
    expect(page.get_by_test_id("tier-path")).to_have_text("light")
    expect(page.get_by_test_id("handoff")).to_have_text("none")
    panel = page.get_by_test_id("decisions")
    expect(panel.locator("[data-kind=accept][data-tier=light]")).to_have_count(1)
    expect(panel.locator("[data-kind=preempt]")).to_have_count(0)
    expect(reply.get_by_test_id("segment")).to_have_count(1)
    assert not of_type(frames, "cascade.handoff")
    (trace,) = of_type(frames, "cascade.trace")
    assert trace["trace"]["final_tier_name"] == "light"
    assert reply.get_by_test_id("assistant-text").text_content() == trace["trace"]["text"]
    page.screenshot(path=str(output_dir / "easy-request.png"), full_page=True)


def test_escape_cancels_the_reply(page: Page, live_server: str) -> None:
    frames = record_frames(page)
    open_and_connect(page, live_server)
    reply = ask(page, HARD)
    expect(reply).to_have_attribute("data-deltas", re.compile(r"^[1-9]"))
    page.keyboard.press("Escape")
    expect(reply).to_have_attribute("data-status", "cancelled", timeout=TURN_TIMEOUT_MS)
    expect(reply.get_by_test_id("turn-status")).to_have_text("cancelled (client cancelled)")
    (done,) = of_type(frames, "response.done")
    assert done["response"]["status"] == "cancelled"
    expect(page.get_by_test_id("cancel")).to_be_disabled()


def test_errors_are_shown(page: Page, live_server: str, output_dir: Path) -> None:
    page.goto(live_server)
    tab_to(page, "model")
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("no-such-profile")
    expect(page.get_by_label("Server URL")).to_have_value(re.compile(r"model=no-such-profile$"))
    tab_to(page, "connect")
    page.keyboard.press("Enter")
    errors = page.get_by_test_id("errors")
    expect(errors.locator("[data-code=model_not_found]")).to_contain_text("default")
    expect(errors.locator("[data-code=close_1008]")).to_be_visible()
    expect(page.get_by_test_id("status")).to_have_attribute("data-state", "error")
    page.screenshot(path=str(output_dir / "error.png"))


def test_every_control_is_labelled_and_reachable_by_tab(page: Page, live_server: str) -> None:
    open_and_connect(page, live_server)
    for label in ("Server URL", "Profile", "API key", "Message", "Speak replies"):
        expect(page.get_by_label(label, exact=True)).to_have_count(1)
    for name in ("Disconnect", "Send", "Hold to talk", "Cancel"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(1)
    seen: list[str | None] = []
    page.get_by_test_id("ws-url").focus()
    for _ in range(12):
        seen.append(focused_testid(page))
        page.keyboard.press("Tab")
    order = [t for t in seen if t]
    for testid in ("ws-url", "model", "api-key", "connect", "speak", "message", "send", "ptt"):
        assert testid in order, (testid, order)
    assert order.index("connect") < order.index("message") < order.index("send")


def test_replies_and_fillers_are_spoken_and_history_keeps_what_was_heard(
    page: Page, live_server: str, output_dir: Path
) -> None:
    page.add_init_script(FAKE_TTS)
    sent: list[dict[str, Any]] = []
    frames = record_frames(page, sent)
    open_and_connect(page, live_server, profile="fillers")
    expect(page.get_by_label("Speak replies")).to_be_checked()
    reply = ask(page, HARD)
    expect(reply).to_have_attribute("data-status", "completed", timeout=TURN_TIMEOUT_MS)
    final = reply.get_by_test_id("assistant-text").text_content() or ""

    # The handoff gap outlasted the 300 ms budget: a filler, shown apart from the answer.
    fillers = [f["text"] for f in of_type(frames, "cascade.filler")]
    assert fillers, "no filler in the handoff gap"
    expect(page.get_by_test_id("filler")).to_have_count(len(fillers))
    expect(page.get_by_test_id("fillers")).to_contain_text(fillers[0])
    expect(reply.locator(".filler")).to_have_text(fillers)
    expect(page.get_by_test_id("decisions").locator("[data-kind=filler]")).to_have_count(
        len(fillers)
    )

    # Released text went to the synthesiser phrase by phrase, all of it, in order; the filler
    # was spoken too, but is no part of the answer.
    queued = page.evaluate("window.__tts.queued")
    phrases = [q for q in queued if q not in fillers]
    assert set(fillers) <= set(queued), queued
    assert "".join(phrases) == final, queued
    assert len(phrases) >= 4, phrases
    assert all(p.rstrip()[-1] in ".,!?;:" for p in phrases), phrases

    # The reply is done but still being spoken: Escape stops it, and the assistant item is
    # truncated to what was heard.
    expect(page.get_by_test_id("cancel")).to_be_enabled()
    page.keyboard.press("Escape")
    expect(reply.locator(".meta-note")).to_contain_text("history keeps the")
    ended = page.evaluate("window.__tts.endedAtCancel")
    heard = sum(len(p) for p in ended if p not in fillers)
    (truncate,) = of_type(sent, "conversation.item.truncate")
    assert truncate["text_end"] == heard and 0 < heard < len(final), (truncate, ended)
    expect(page.get_by_test_id("cancel")).to_be_disabled()
    page.wait_for_timeout(100)
    (truncated,) = of_type(frames, "conversation.item.truncated")
    assert truncated["item_id"] == truncate["item_id"]
    assert not of_type(frames, "error")
    page.screenshot(path=str(output_dir / "spoken-with-filler.png"), full_page=True)


def test_typing_during_a_spoken_reply_barges_in(page: Page, live_server: str) -> None:
    page.add_init_script(FAKE_TTS)
    sent: list[dict[str, Any]] = []
    frames = record_frames(page, sent)
    open_and_connect(page, live_server)
    ask(page, HARD)
    first = page.get_by_test_id("assistant-message").nth(0)
    expect(first).to_have_attribute("data-deltas", re.compile(r"^[2-9]|\d\d"))
    page.keyboard.type(EASY)
    page.keyboard.press("Enter")
    expect(first).to_have_attribute("data-status", "cancelled", timeout=TURN_TIMEOUT_MS)
    second = page.get_by_test_id("assistant-message").nth(1)
    expect(second).to_have_attribute("data-status", "completed", timeout=TURN_TIMEOUT_MS)
    expect(page.get_by_test_id("tier-path")).to_have_text("light")
    # Cancel, cut history to what was heard, and only then the new message.
    kinds = [e["type"] for e in sent]
    i = kinds.index("response.cancel")
    assert kinds[i : i + 4] == [
        "response.cancel",
        "conversation.item.truncate",
        "conversation.item.create",
        "response.create",
    ], kinds
    assert sent[i + 2]["item"]["content"][0]["text"] == EASY
    assert not of_type(frames, "error")
