// realtime-cascade voice console: a plain script, no build step, no dependencies.
//
// One WebSocket speaks the Realtime-compatible protocol (protocols/README.md). A turn is
// conversation.item.create (user input_text) + response.create; the reply streams as
// response.output_text.delta (released text only: never retracted), while cascade.* events
// say what the cascade decided. Speech in: the browser's SpeechRecognition (push-to-talk).
// Speech out: speechSynthesis, phrase by phrase as text is released. Barge-in (typing, talking
// or Cancel while the reply is still being spoken) truncates the assistant item to what was
// heard (conversation.item.truncate with text_end), so history matches what the listener got.
// Voice (server) mode instead streams the microphone as input_audio_buffer.append (server VAD
// and speech-to-text) and plays response.output_audio.delta; when the server hears the user
// start speaking (input_audio_buffer.speech_started) playback stops and the item is truncated
// to the audio actually played (conversation.item.truncate with audio_end_ms). See voice.js.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"), statusText: $("status-text"),
    connectForm: $("connect-form"), url: $("ws-url"), model: $("model"), key: $("api-key"),
    connect: $("connect"),
    speak: $("speak"), speakNote: $("speak-note"),
    errors: $("errors"), transcript: $("transcript"),
    composer: $("composer"), message: $("message"), send: $("send"), ptt: $("ptt"),
    pttLabel: $("ptt-label"), pttNote: $("ptt-note"), cancel: $("cancel"),
    ladder: $("ladder"), tierPath: $("tier-path"), firstText: $("first-text"),
    handoff: $("handoff"), cost: $("cost"), turns: $("turns"),
    decisions: $("decisions"), fillers: $("fillers"),
    voiceMode: $("voice-mode"), mic: $("mic"), micLabel: $("mic-label"),
    voiceNote: $("voice-note"), playback: $("playback"),
  };

  const state = {
    ws: null,
    connected: false,
    tiers: [],            // tier names, lightest first (session.cascade.tiers)
    turns: new Map(),     // response_id -> turn
    active: null,         // the running turn
    pending: [],          // response.create sent, response.created not yet seen: [{t0}]
    sentTypes: new Map(), // client event_id -> type (to say what an error answers)
    seq: 0,
    totalCost: 0,
    turnCount: 0,
    escalations: 0,
    queuedText: null,     // a message held until the running reply is cancelled and truncated
  };

  // --- small helpers ---------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role" || k === "title") {
        node.setAttribute(k, String(v));
      } else node[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  const codePoints = (s) => Array.from(s).length;  // the server counts Python str characters
  const ms = (v) => (v === null || v === undefined ? "—" : `${Math.round(v)} ms`);
  function usd(v) {
    if (!v) return "$0";
    return v < 0.01 ? `$${v.toFixed(6)}` : `$${v.toFixed(4)}`;
  }
  function tierIndex(name, fallback) {
    const i = state.tiers.indexOf(name);
    return i >= 0 ? i : (fallback ?? 0);
  }
  function tierName(index) {
    return state.tiers[index] ?? `tier ${index}`;
  }
  function clearEmpty(list) {
    const empty = list.querySelector(":scope > .empty");
    if (empty) empty.remove();
  }
  function scrollToEnd(node) {
    node.scrollTop = node.scrollHeight;
  }

  // --- connection ------------------------------------------------------------------------------

  function defaultUrl() {
    const model = ui.model.value.trim() || "default";
    if (location.protocol === "http:" || location.protocol === "https:") {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      return `${scheme}://${location.host}/v1/realtime?model=${encodeURIComponent(model)}`;
    }
    return `ws://127.0.0.1:8765/v1/realtime?model=${encodeURIComponent(model)}`;
  }

  function setModelInUrl() {
    try {
      const u = new URL(ui.url.value.trim());
      u.searchParams.set("model", ui.model.value.trim() || "default");
      ui.url.value = u.toString();
    } catch { /* the user is still typing a URL; leave it */ }
  }

  function setModelFromUrl() {
    try {
      const m = new URL(ui.url.value.trim()).searchParams.get("model");
      if (m) ui.model.value = m;
    } catch { /* not a URL yet */ }
  }

  function setStatus(kind, text) {
    ui.status.dataset.state = kind;
    ui.statusText.textContent = text;
  }

  function setConnected(on) {
    state.connected = on;
    ui.connect.textContent = on ? "Disconnect" : "Connect";
    ui.connect.classList.toggle("btn-primary", !on);
    ui.connect.classList.toggle("btn-ghost", on);
    ui.message.disabled = !on;
    ui.send.disabled = !on;
    ui.message.placeholder = on ? "Type a request and press Enter" : "Connect first";
    ui.url.readOnly = on;
    ui.model.readOnly = on;
    ui.key.readOnly = on;
    updatePtt();
    if (voice.player) updateMic();
    updateCancel();
  }

  function connect() {
    setModelInUrl();
    let url;
    try {
      url = new URL(ui.url.value.trim());
      if (url.protocol !== "ws:" && url.protocol !== "wss:") throw new Error("scheme");
    } catch {
      showError({ code: "invalid_url", message: "The server URL must be a ws:// or wss:// URL." });
      ui.url.focus();
      return;
    }
    const key = ui.key.value.trim();
    // Browsers cannot set headers on a WebSocket: the key travels as a subprotocol.
    const protocols = key ? ["realtime", `openai-insecure-api-key.${key}`] : ["realtime"];
    let ws;
    try {
      ws = new WebSocket(url.toString(), protocols);
    } catch (err) {
      showError({ code: "connect_failed", message: String(err && err.message ? err.message : err) });
      return;
    }
    state.ws = ws;
    ui.errors.replaceChildren(); // a fresh attempt: old errors no longer apply
    setStatus("connecting", "Connecting…");
    ui.connect.disabled = true;
    let opened = false;

    ws.addEventListener("open", () => {
      opened = true;
      ui.connect.disabled = false;
      setConnected(true);
      configureVoice();
      setStatus("connected", `Connected · ${url.searchParams.get("model") || "default"}`);
      ui.message.focus();
    });
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") return;
      let event;
      try {
        event = JSON.parse(ev.data);
      } catch {
        showError({ code: "bad_frame", message: "The server sent a frame that is not JSON." });
        return;
      }
      try {
        handle(event);
      } catch (err) {
        console.error("failed to handle", event, err);
      }
    });
    ws.addEventListener("close", (ev) => {
      if (state.ws !== ws) return;
      state.ws = null;
      ui.connect.disabled = false;
      const wasRunning = state.active;
      if (wasRunning) finishTurn(wasRunning, { status: "cancelled", status_details: { reason: "connection_closed" } });
      state.active = null;
      state.pending = [];
      state.queuedText = null;
      stopSpeech();
      stopMic();
      stopPlayback(false);
      setConnected(false);
      if (!opened) {
        setStatus("error", "Could not connect");
        showError({
          code: "connect_failed",
          message: `Could not open ${url.origin}${url.pathname}: the server is unreachable or ` +
            "refused the connection (a wrong API key, a foreign origin, or too many sessions).",
        });
      } else if (ev.code === 1000 || ev.code === 1005) {
        setStatus("disconnected", "Disconnected");
      } else {
        const why = closeReasons[ev.code] || "the connection ended";
        setStatus("error", `Closed (${ev.code})`);
        showError({ code: `close_${ev.code}`, message: `${why}${ev.reason ? `: ${ev.reason}` : ""}.` });
      }
    });
  }

  const closeReasons = {
    1001: "The server is shutting down",
    1006: "The connection was lost",
    1008: "The server closed the session (policy)",
    1009: "A message was too large",
    1011: "The server hit an internal error",
    1013: "The server is busy or this client read too slowly; try again",
  };

  function disconnect() {
    if (state.ws) state.ws.close(1000, "bye");
  }

  function send(event) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const id = `evt_web_${++state.seq}`;
    state.sentTypes.set(id, event.type);
    if (state.sentTypes.size > 200) state.sentTypes.delete(state.sentTypes.keys().next().value);
    ws.send(JSON.stringify({ ...event, event_id: id }));
    return true;
  }

  // --- sending turns ---------------------------------------------------------------------------

  function sendText(raw) {
    const text = raw.trim();
    if (!text || !state.connected) return;
    // Barge-in: stop speaking. A user message while a reply runs makes the server cancel it
    // (turn_detected). But when the listener heard less than was released, history must be cut
    // before the next turn reads it: cancel, truncate at response.done, then send (finishTurn).
    const active = state.active;
    interrupt({ cancelServer: false });
    if (active && active.running && active.truncatePending && !voice.server) {
      state.queuedText = text;
      send({ type: "response.cancel" });
      return;
    }
    send({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
    });
    state.pending.push({ t0: performance.now() });
    send({ type: "response.create" });
  }

  // The user wants silence now: stop speech, cancel a running reply, and make history hold only
  // what was heard.
  function interrupt({ cancelServer }) {
    if (voice.server) stopPlayback(true);
    const spoken = speech.turn;
    if (spoken && speech.enabled && (spoken.running || heardChars(spoken) < spoken.chars)) {
      spoken.heardChars = heardChars(spoken);
      spoken.truncatePending = true;
    }
    stopSpeech();
    const active = state.active;
    if (cancelServer && active && active.running) send({ type: "response.cancel" });
    if (spoken && spoken.truncatePending && !spoken.running) truncateToHeard(spoken);
    updateCancel();
  }

  function truncateToHeard(turn) {
    turn.truncatePending = false;
    if (!turn.itemId || turn.heardChars === null || turn.heardChars >= turn.chars) return;
    send({
      type: "conversation.item.truncate",
      item_id: turn.itemId,
      content_index: 0,
      audio_end_ms: 0,
      text_end: turn.heardChars,
    });
    turn.bubble.append(h("p", {
      class: "meta-note",
      text: `Interrupted: history keeps the ${turn.heardChars} characters that were spoken.`,
    }));
  }

  // --- server events ---------------------------------------------------------------------------

  function handle(e) {
    switch (e.type) {
      case "session.created":
      case "session.updated":
        onSession(e.session);
        break;
      case "conversation.item.added":
        if (e.item && e.item.type === "message" && e.item.role === "user") addUserMessage(e.item);
        break;
      case "response.created":
        startTurn(e.response.id);
        break;
      case "response.output_item.added":
        if (e.item && e.item.type === "message") turnOf(e.response_id).itemId = e.item.id;
        break;
      case "response.output_text.delta":
        onDelta(turnOf(e.response_id), e);
        break;
      case "response.output_text.done":
        onTextDone(turnOf(e.response_id), e.text);
        break;
      case "response.output_audio_transcript.delta":
        onDelta(turnOf(e.response_id), e);
        break;
      case "response.output_audio_transcript.done":
        onTextDone(turnOf(e.response_id), e.transcript);
        break;
      case "response.output_audio.delta":
        onAudioDelta(turnOf(e.response_id), e);
        break;
      case "input_audio_buffer.speech_started":
        if (voice.server) stopPlayback(true); // barge-in: the server cancels a running reply
        break;
      case "conversation.item.input_audio_transcription.completed":
        onUserTranscript(e.item_id, e.transcript || "(nothing recognised)");
        break;
      case "conversation.item.input_audio_transcription.failed":
        onUserTranscript(e.item_id, "(not understood)");
        showError(e.error || {});
        break;
      case "response.function_call_arguments.done":
        onToolCall(turnOf(e.response_id), e);
        break;
      case "cascade.decision":
        onDecision(turnOf(e.response_id), e.decision);
        break;
      case "cascade.handoff":
        onHandoff(turnOf(e.response_id), e);
        break;
      case "cascade.filler":
        onFiller(turnOf(e.response_id), e.text);
        break;
      case "cascade.trace":
        onTrace(turnOf(e.response_id), e.trace);
        break;
      case "response.done":
        finishTurn(turnOf(e.response.id), e.response);
        break;
      case "error":
        showError(e.error || {});
        break;
      default:
        break; // clients ignore what they do not know
    }
  }

  function onSession(session) {
    const cascade = session && session.cascade;
    if (!cascade) return;
    state.tiers = cascade.tiers || [];
    ui.ladder.replaceChildren(...pathNodes(state.tiers, "ladder"));
    ui.ladder.setAttribute("aria-label", `Profile ${cascade.profile}: tiers ${state.tiers.join(", ")}`);
    setStatus("connected", `Connected · ${cascade.profile} (${state.tiers.join(" → ")})`);
  }

  function addUserMessage(item) {
    const text = (item.content || []).map((c) => c.text || c.transcript || "").join("");
    clearEmpty(ui.transcript);
    ui.transcript.append(h("li", {
      class: "msg user", "data-testid": "user-message", "data-item-id": item.id,
    },
    h("p", { class: "who", text: "You" }),
    h("p", { class: "text", text: text || "…" })));
    scrollToEnd(ui.transcript);
  }

  function turnOf(id) {
    return state.turns.get(id) || startTurn(id);
  }

  function startTurn(id) {
    if (state.turns.has(id)) return state.turns.get(id);
    const pending = state.pending.shift();
    state.turnCount += 1;
    const turn = {
      id, number: state.turnCount, t0: pending ? pending.t0 : performance.now(),
      running: true, status: "in_progress",
      path: [], hedges: [], tier: null, seg: null,
      text: "", chars: 0, deltas: 0, firstMs: null, ttftMs: null,
      handoffs: [], handoffMs: null, cost: 0,
      itemId: null, heardChars: null, truncatePending: false,
      spokenChars: 0, speakingPiece: null,
    };
    state.turns.set(id, turn);
    state.active = turn;

    clearEmpty(ui.transcript);
    turn.textEl = h("p", { class: "text", "data-testid": "assistant-text" });
    turn.tierBadges = h("span", { class: "badges" });
    turn.bubble = h("li", {
      class: "msg assistant", "data-testid": "assistant-message",
      "data-response-id": id, "data-status": "in_progress", "aria-busy": "true",
    },
    h("p", { class: "who" }, "Assistant", turn.tierBadges),
    turn.textEl,
    h("span", { class: "typing", "aria-hidden": "true" }, h("i"), h("i"), h("i")));
    ui.transcript.append(turn.bubble);
    scrollToEnd(ui.transcript);

    clearEmpty(ui.decisions);
    turn.summary = h("span", { class: "turn-summary", text: "running…" });
    turn.decisionList = h("ol", { class: "turn-decisions" });
    turn.group = h("li", { class: "turn", "data-response-id": id },
      h("p", { class: "turn-title" }, h("strong", { text: `Turn ${turn.number}` }), turn.summary),
      turn.decisionList);
    ui.decisions.append(turn.group);
    scrollToEnd(ui.decisions);

    ui.turns.textContent = `${state.turnCount}${state.escalations ? ` · ${state.escalations} escalated` : ""}`;
    renderTurnStats(turn);
    updateCancel();
    return turn;
  }

  function onDelta(turn, e) {
    if (!turn.itemId) turn.itemId = e.item_id;
    const text = e.delta || "";
    if (!text) return;
    if (turn.firstMs === null) turn.firstMs = performance.now() - turn.t0;
    const name = turn.tier ?? tierName(0);
    if (!turn.seg || turn.seg.dataset.tier !== name) {
      const idx = tierIndex(name);
      turn.seg = h("span", {
        class: "seg", "data-tier": name, "data-tier-index": Math.min(idx, 3),
        "data-testid": "segment",
      });
      turn.seg.append(document.createTextNode(""));
      turn.textEl.append(turn.seg);
      if (!turn.path.length) setPath(turn, [name]);
    }
    turn.seg.firstChild.appendData(text);
    turn.text += text;
    turn.chars += codePoints(text);
    turn.deltas += 1;
    turn.bubble.dataset.deltas = String(turn.deltas);
    speakFeed(turn, text);
    renderTurnStats(turn);
    scrollToEnd(ui.transcript);
  }

  function onTextDone(turn, text) {
    // Released text is never retracted: the final text extends what was streamed.
    if (typeof text === "string" && text !== turn.text && text.startsWith(turn.text)) {
      onDelta(turn, { delta: text.slice(turn.text.length) });
    }
  }

  function onToolCall(turn, e) {
    clearEmpty(ui.transcript);
    turn.bubble.append(h("p", { class: "tool-call", "data-testid": "tool-call" },
      h("span", { class: "tool-name", text: `${e.name}(…)` }),
      h("code", { text: e.arguments }),
      h("span", { class: "hint", text: " — this page does not run tools" })));
  }

  const KIND_LABEL = {
    route: "route", hedge: "hedge", hedge_cancel: "hedge cancelled", preempt: "preempt",
    fallback: "fallback", refuse: "refused", filler: "filler", accept: "accept", stop: "stop",
  };

  function onDecision(turn, d) {
    if (!d) return;
    const toName = d.to_tier === null || d.to_tier === undefined ? null : tierName(d.to_tier);
    const scores = d.scores || {};
    const bits = [];
    if (scores.p_correct !== undefined) bits.push(`p(correct) ${scores.p_correct.toFixed(2)}`);
    if (scores.complexity !== undefined) bits.push(`complexity ${scores.complexity.toFixed(2)}`);
    if (scores.tokens !== undefined) bits.push(`${scores.tokens} tok`);
    if (scores.cost_usd !== undefined) bits.push(usd(scores.cost_usd));
    const item = h("li", {
      class: "decision", "data-kind": d.kind, "data-tier": d.tier_name,
      "data-testid": "decision",
    },
    h("span", { class: "t", text: ms(d.t_ms) }),
    h("span", { class: `kind kind-${d.kind}`, text: KIND_LABEL[d.kind] || d.kind }),
    h("span", { class: "tiers", text: toName ? `${d.tier_name} → ${toName}` : d.tier_name }),
    h("span", { class: "reason", text: d.reason }),
    bits.length ? h("span", { class: "scores", text: bits.join(" · ") }) : null);
    turn.decisionList.append(item);
    scrollToEnd(ui.decisions);

    if (d.kind === "route") setPath(turn, [d.tier_name]);
    if (d.kind === "hedge" && toName) turn.hedges.push(toName);
    if (d.kind === "hedge_cancel") turn.hedgeCancelled = true;
    renderTurnStats(turn);
  }

  function onHandoff(turn, e) {
    turn.handoffs.push(e);
    turn.tier = e.to_tier_name;
    if (!turn.path.length) turn.path.push(e.from_tier_name);
    setPath(turn, [...turn.path, e.to_tier_name]);
    // Whatever the old tier had not released is dropped; speak on from the new tier's text.
    renderTurnStats(turn);
  }

  function onFiller(turn, text) {
    clearEmpty(ui.fillers);
    ui.fillers.append(h("li", { "data-testid": "filler" },
      h("span", { class: "t", text: `Turn ${turn.number}` }), h("q", { text })));
    turn.bubble.insertBefore(h("p", { class: "filler", text }), turn.textEl);
    speakFiller(text);
  }

  function onTrace(turn, trace) {
    if (!trace) return;
    turn.ttftMs = trace.ttft_ms ?? null;
    turn.handoffMs = trace.handoff_ms ?? null;
    turn.cost = trace.cost_usd || 0;
    state.totalCost += turn.cost;
    if (trace.escalated) state.escalations += 1;
    turn.finalTier = trace.final_tier_name;
    ui.turns.textContent = `${state.turnCount}${state.escalations ? ` · ${state.escalations} escalated` : ""}`;
    renderTurnStats(turn);
  }

  function finishTurn(turn, response) {
    if (!turn.running) return;
    turn.running = false;
    turn.status = response.status || "completed";
    turn.bubble.dataset.status = turn.status;
    turn.bubble.removeAttribute("aria-busy");
    const typing = turn.bubble.querySelector(".typing");
    if (typing) typing.remove();
    if (turn.status !== "completed") {
      const details = response.status_details || {};
      const why = details.reason || (details.error && details.error.message) || "";
      turn.bubble.append(h("p", {
        class: `meta-note status-${turn.status}`, "data-testid": "turn-status",
        text: `${turn.status}${why ? ` (${why.replaceAll("_", " ")})` : ""}`,
      }));
      if (details.error) showError(details.error);
    }
    const usage = response.usage;
    const parts = [turn.finalTier || turn.tier || "", turn.status];
    if (turn.cost) parts.push(usd(turn.cost));
    if (usage && usage.total_tokens) parts.push(`${usage.total_tokens} tok`);
    turn.summary.textContent = parts.filter(Boolean).join(" · ");
    if (state.active === turn) state.active = null;
    speakFlush(turn);
    if (turn.truncatePending) truncateToHeard(turn);
    renderTurnStats(turn);
    updateCancel();
    if (state.queuedText && !state.active) {
      const text = state.queuedText;
      state.queuedText = null;
      sendText(text);
    }
  }

  // --- the cascade panel -----------------------------------------------------------------------

  function pathNodes(names, cls) {
    const nodes = [];
    names.forEach((name, i) => {
      if (i) nodes.push(h("span", { class: "arrow", text: " → " }));
      nodes.push(h("span", {
        class: `chip tier-chip ${cls || ""}`, "data-tier-index": Math.min(tierIndex(name, i), 3),
        text: name,
      }));
    });
    return nodes;
  }

  function setPath(turn, names) {
    turn.path = names;
    if (turn.tier === null && names.length) turn.tier = names[names.length - 1];
    turn.tierBadges.replaceChildren(...pathNodes(names, "small"));
  }

  function renderTurnStats(turn) {
    if (turn !== latestTurn()) return;
    const path = pathNodes(turn.path);
    if (turn.hedges.length) {
      path.push(h("span", {
        class: "hedge-note",
        text: ` (hedged ${turn.hedges.join(", ")}${turn.hedgeCancelled ? ", cancelled" : ""})`,
      }));
    }
    ui.tierPath.replaceChildren(...(path.length ? path : [document.createTextNode("—")]));

    ui.firstText.replaceChildren(
      h("span", { class: "num", "data-testid": "first-text-client", text: ms(turn.firstMs) }),
      h("span", { class: "sub", text: " in this browser" }),
      h("br"),
      h("span", { class: "num", "data-testid": "first-text-server", text: ms(turn.ttftMs) }),
      h("span", { class: "sub", text: " server (trace)" }));

    if (turn.handoffs.length) {
      const lines = [];
      turn.handoffs.forEach((hd, i) => {
        if (i) lines.push(h("br"));
        lines.push(h("span", { class: "num", text: `${hd.from_tier_name} → ${hd.to_tier_name}` }),
          h("span", { class: "sub", text: ` at ${ms(hd.t_ms)}, after ${hd.released_chars} chars` }));
      });
      lines.push(h("br"), h("span", { class: "sub", text: "gap heard " }),
        h("span", { class: "num", "data-testid": "handoff-gap", text: ms(turn.handoffMs) }));
      ui.handoff.replaceChildren(...lines);
    } else {
      ui.handoff.replaceChildren(h("span", { class: "sub", text: turn.running ? "none yet" : "none" }));
    }

    ui.cost.replaceChildren(
      h("span", { class: "num", text: usd(state.totalCost) }),
      h("br"),
      h("span", { class: "sub", text: `this turn ${turn.running && !turn.cost ? "…" : usd(turn.cost)}` }));
  }

  function latestTurn() {
    let last = null;
    for (const t of state.turns.values()) last = t;
    return last;
  }

  // --- errors ----------------------------------------------------------------------------------

  function showError(err) {
    const code = err.code || err.type || "error";
    const answers = err.event_id && state.sentTypes.get(err.event_id);
    const card = h("div", { class: "error", "data-testid": "error", "data-code": code },
      h("div", { class: "error-body" },
        h("strong", { class: "error-code", text: code }),
        h("span", { class: "error-msg", text: err.message || "Something went wrong." }),
        err.param || answers
          ? h("span", {
            class: "error-meta",
            text: [answers ? `in reply to ${answers}` : "", err.param ? `param ${err.param}` : ""]
              .filter(Boolean).join(" · "),
          })
          : null),
      h("button", {
        type: "button", class: "btn btn-icon", "aria-label": `Dismiss error ${code}`,
        text: "×", onclick: () => card.remove(),
      }));
    ui.errors.append(card);
    while (ui.errors.children.length > 4) ui.errors.firstElementChild.remove();
  }

  // --- speech out ------------------------------------------------------------------------------

  const synth = "speechSynthesis" in window ? window.speechSynthesis : null;
  const speech = {
    enabled: false,
    turn: null,     // the turn whose text is being spoken
    buf: "",        // released text not yet handed to the synthesiser
    queued: 0,      // utterances queued or speaking
    gen: 0,         // bumped by stopSpeech(): older utterances' callbacks are ignored
  };

  function initSpeech() {
    if (!synth || !("SpeechSynthesisUtterance" in window)) {
      ui.speak.disabled = true;
      ui.speakNote.hidden = false;
      ui.speakNote.textContent = "This browser has no speech synthesis: replies are shown, not spoken.";
      return;
    }
    const saved = localStorage.getItem("rc.speak");
    speech.enabled = saved === null ? true : saved === "1";
    ui.speak.checked = speech.enabled;
    ui.speak.addEventListener("change", () => {
      speech.enabled = ui.speak.checked;
      localStorage.setItem("rc.speak", speech.enabled ? "1" : "0");
      if (!speech.enabled) stopSpeech();
      else ui.speakNote.hidden = true;
      updateCancel();
    });
  }

  // Speak released text phrase by phrase: cut after punctuation that is followed by a space
  // (so "1,500" is not split), or at a space when a phrase runs long.
  function speakFeed(turn, text) {
    if (!speech.enabled || !synth || voice.server) return;
    if (speech.turn !== turn) {
      speech.turn = turn;
      speech.buf = "";
    }
    speech.buf += text;
    for (;;) {
      const m = /[.!?;:,](?=\s)/.exec(speech.buf);
      let cut = m ? m.index + 1 : -1;
      if (cut < 0 && speech.buf.length > 160) cut = speech.buf.lastIndexOf(" ", 160);
      if (cut <= 0) break;
      speakPiece(turn, speech.buf.slice(0, cut));
      speech.buf = speech.buf.slice(cut);
    }
  }

  function speakFlush(turn) {
    if (speech.turn === turn && speech.buf) {
      speakPiece(turn, speech.buf);
      speech.buf = "";
    }
  }

  function utter(text, onDone, onBoundary) {
    const u = new SpeechSynthesisUtterance(text);
    u.lang = document.documentElement.lang || navigator.language || "en";
    u.rate = 1.05;
    const gen = speech.gen; // callbacks from before a stopSpeech() are stale
    const settle = (spoken) => {
      if (gen !== speech.gen) return;
      speech.queued = Math.max(0, speech.queued - 1);
      if (spoken && onDone) onDone();
      updateCancel();
    };
    u.onend = () => settle(true);
    u.onerror = (ev) => {
      settle(false); // not heard
      if (gen === speech.gen && ev.error !== "interrupted" && ev.error !== "canceled") {
        // No voice (e.g. headless) or no permission: turn speech off rather than pretend.
        speech.enabled = false;
        ui.speak.checked = false;
        stopSpeech();
        ui.speakNote.hidden = false;
        ui.speakNote.textContent = `Speech synthesis failed (${ev.error}): replies are shown, not spoken.`;
      }
    };
    if (onBoundary) u.onboundary = (ev) => { if (gen === speech.gen) onBoundary(ev); };
    speech.queued += 1;
    synth.speak(u);
    updateCancel();
  }

  function speakPiece(turn, piece) {
    const chars = codePoints(piece);
    if (!piece.trim()) {
      turn.spokenChars += chars;
      return;
    }
    const entry = { chars, at: 0 };
    utter(piece, () => {
      turn.spokenChars += chars;
      if (turn.speakingPiece === entry) turn.speakingPiece = null;
    }, (ev) => {
      turn.speakingPiece = entry;
      entry.at = codePoints(piece.slice(0, ev.charIndex));
    });
  }

  function speakFiller(text) {
    if (speech.enabled && synth && !voice.server) utter(text);
  }

  function heardChars(turn) {
    const partial = turn.speakingPiece ? turn.speakingPiece.at : 0;
    return Math.min(turn.chars, turn.spokenChars + partial);
  }

  function stopSpeech() {
    speech.buf = "";
    speech.turn = null;
    speech.gen += 1;
    if (synth && speech.queued > 0) synth.cancel();
    speech.queued = 0;
  }

  // --- speech in (push-to-talk) ----------------------------------------------------------------

  const Recognition = window.SpeechRecognition || window.webkitSpeechRecognition || null;
  const ptt = { rec: null, listening: false, finalText: "", broken: false, typed: "" };

  function updatePtt() {
    ui.ptt.disabled = !Recognition || ptt.broken || !state.connected;
  }

  function pttUnavailable(message) {
    ptt.broken = true;
    ui.pttNote.hidden = false;
    ui.pttNote.textContent = message;
    updatePtt();
  }

  function initPtt() {
    if (!Recognition) {
      ui.ptt.hidden = true;
      pttUnavailable("Push-to-talk needs the browser’s speech recognition (Chrome, Edge or " +
        "Safari); type your request instead.");
      return;
    }
    // Pointer: press and hold. Keyboard: hold Space or Enter. Assistive tech (a click with no
    // pointer): toggle.
    ui.ptt.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || ui.ptt.disabled) return;
      ui.ptt.setPointerCapture(e.pointerId);
      startListening();
    });
    const release = () => { if (ptt.listening) stopListening(); };
    ui.ptt.addEventListener("pointerup", release);
    ui.ptt.addEventListener("pointercancel", release);
    ui.ptt.addEventListener("keydown", (e) => {
      if (e.key !== " " && e.key !== "Enter") return;
      e.preventDefault();
      if (!e.repeat && !ptt.listening) startListening();
    });
    ui.ptt.addEventListener("keyup", (e) => {
      if (e.key !== " " && e.key !== "Enter") return;
      e.preventDefault();
      release();
    });
    ui.ptt.addEventListener("click", (e) => {
      if (e.detail !== 0) return; // a real pointer click: handled by down/up
      if (ptt.listening) stopListening();
      else startListening();
    });
  }

  function startListening() {
    if (!state.connected || ptt.listening) return;
    interrupt({ cancelServer: true }); // barge-in
    const rec = new Recognition();
    rec.lang = navigator.language || "en-US";
    rec.interimResults = true;
    rec.continuous = true;
    ptt.rec = rec;
    ptt.finalText = "";
    ptt.typed = ui.message.value;
    rec.onresult = (ev) => {
      let interim = "";
      for (let i = ev.resultIndex; i < ev.results.length; i++) {
        const r = ev.results[i];
        if (r.isFinal) ptt.finalText += r[0].transcript;
        else interim += r[0].transcript;
      }
      ui.message.value = (ptt.finalText + interim).trim();
    };
    rec.onerror = (ev) => {
      const messages = {
        "not-allowed": "Microphone permission was denied; type your request instead.",
        "service-not-allowed": "Speech recognition is not allowed here; type your request instead.",
        "network": "The browser’s speech recognition service is unreachable; type instead.",
        "audio-capture": "No microphone was found; type your request instead.",
      };
      if (messages[ev.error]) pttUnavailable(messages[ev.error]);
      else if (ev.error !== "aborted" && ev.error !== "no-speech") {
        ui.pttNote.hidden = false;
        ui.pttNote.textContent = `Speech recognition: ${ev.error}.`;
      }
    };
    rec.onend = () => {
      const text = ptt.finalText.trim() || (ptt.listening ? "" : ui.message.value.trim());
      setListening(false);
      ptt.rec = null;
      if (text && text !== ptt.typed.trim()) {
        ui.message.value = "";
        sendText(text);
      } else {
        ui.message.value = ptt.typed;
      }
    };
    try {
      rec.start();
      setListening(true);
    } catch (err) {
      pttUnavailable(`Speech recognition could not start (${err && err.message ? err.message : err}).`);
    }
  }

  function stopListening() {
    if (!ptt.rec) return;
    ptt.listening = false; // onend sends what was heard
    ui.ptt.setAttribute("aria-pressed", "false");
    try { ptt.rec.stop(); } catch { /* already stopped */ }
  }

  function setListening(on) {
    ptt.listening = on;
    ui.ptt.setAttribute("aria-pressed", on ? "true" : "false");
    ui.ptt.classList.toggle("listening", on);
    ui.pttLabel.textContent = on ? "Listening… release to send" : "Hold to talk";
  }

  // --- server voice (voice.js): microphone -> input_audio_buffer.append, audio deltas -> speakers

  const voice = { server: false, mic: null, player: null };

  function initVoice() {
    const V = window.RealtimeVoice;
    voice.player = V ? new V.Player(showPlayback) : null;
    voice.mic = V && V.Microphone.supported()
      ? new V.Microphone({ onChunk: (audio) => send({ type: "input_audio_buffer.append", audio }) })
      : null;
    ui.voiceMode.value = localStorage.getItem("rc.voice") === "server" ? "server" : "browser";
    ui.voiceMode.addEventListener("change", () => {
      localStorage.setItem("rc.voice", ui.voiceMode.value);
      setVoiceMode(ui.voiceMode.value === "server");
    });
    ui.mic.addEventListener("click", toggleMic);
    setVoiceMode(ui.voiceMode.value === "server");
  }

  function setVoiceMode(on) {
    voice.server = on;
    if (on) stopSpeech();
    else {
      stopMic();
      stopPlayback(false);
    }
    ui.mic.hidden = !on;
    ui.ptt.hidden = on || !Recognition;
    ui.playback.hidden = !on;
    ui.voiceNote.hidden = !on || Boolean(voice.mic);
    if (on && !voice.mic) {
      ui.voiceNote.textContent = "This browser cannot capture audio here (it needs getUserMedia " +
        "and AudioWorklet, on https or localhost): type instead; replies are still spoken.";
    }
    updateMic();
    configureVoice();
  }

  // The session follows the mode: spoken replies and the microphone's rate, or text.
  function configureVoice() {
    if (!state.connected) return;
    const session = { output_modalities: [voice.server ? "audio" : "text"] };
    if (voice.server) {
      const rate = voice.mic && voice.mic.running ? voice.mic.rate : 24000;
      session.audio = { input: { format: { type: "audio/pcm", rate } } };
    }
    send({ type: "session.update", session });
  }

  function updateMic() {
    const on = Boolean(voice.mic && voice.mic.running);
    ui.mic.disabled = !state.connected || !voice.server || !voice.mic;
    ui.mic.setAttribute("aria-pressed", on ? "true" : "false");
    ui.mic.classList.toggle("listening", on);
    ui.micLabel.textContent = on ? "Stop microphone" : "Start microphone";
  }

  async function toggleMic() {
    if (!voice.mic) return;
    if (voice.mic.running) {
      stopMic();
      return;
    }
    if (voice.player) voice.player.unlock(); // a click: the page may play audio from now on
    try {
      await voice.mic.start();
      ui.voiceNote.hidden = true;
    } catch (err) {
      ui.voiceNote.hidden = false;
      ui.voiceNote.textContent = `The microphone could not start (${err && err.name ? err.name : err}); ` +
        "type instead.";
    }
    configureVoice(); // the capture rate
    updateMic();
  }

  function stopMic() {
    if (voice.mic) voice.mic.stop();
    updateMic();
  }

  function showPlayback(player) {
    ui.playback.dataset.state = player.playing ? "playing" : "idle";
    ui.playback.dataset.chunks = String(player.chunks);
    ui.playback.textContent = player.playing ? "Playing the reply…" : "";
    updateCancel();
  }

  function onAudioDelta(turn, e) {
    if (!turn.itemId) turn.itemId = e.item_id;
    if (voice.server && voice.player) voice.player.play(e.item_id, e.delta);
  }

  // Silence the reply; if less was heard than was sent, cut the item to the audio played.
  function stopPlayback(truncate) {
    if (!voice.player) return;
    const heard = voice.player.stop();
    if (truncate && heard.item && heard.playedMs < heard.queuedMs - 1) {
      send({
        type: "conversation.item.truncate",
        item_id: heard.item,
        content_index: 0,
        audio_end_ms: heard.playedMs,
      });
    }
  }

  function onUserTranscript(itemId, text) {
    for (const li of ui.transcript.querySelectorAll("[data-testid=user-message]")) {
      if (li.dataset.itemId === itemId) li.querySelector(".text").textContent = text;
    }
  }

  // --- cancel ----------------------------------------------------------------------------------

  function canCancel() {
    return Boolean((state.active && state.active.running) || speech.queued > 0 ||
      (voice.player && voice.player.playing));
  }

  function updateCancel() {
    ui.cancel.disabled = !state.connected || !canCancel();
  }

  // --- wiring ----------------------------------------------------------------------------------

  ui.url.value = defaultUrl();
  const savedModel = localStorage.getItem("rc.model");
  if (savedModel) {
    ui.model.value = savedModel;
    setModelInUrl();
  }
  ui.model.addEventListener("input", () => {
    setModelInUrl();
    localStorage.setItem("rc.model", ui.model.value.trim());
  });
  ui.url.addEventListener("change", setModelFromUrl);

  ui.connectForm.addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.ws) disconnect();
    else connect();
  });

  ui.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = ui.message.value;
    if (!text.trim()) return;
    ui.message.value = "";
    sendText(text);
  });

  ui.cancel.addEventListener("click", () => {
    interrupt({ cancelServer: true });
    ui.message.focus();
  });

  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !e.defaultPrevented && canCancel()) {
      e.preventDefault();
      interrupt({ cancelServer: true });
    }
  });

  initSpeech();
  initPtt();
  initVoice();
  setConnected(false);
})();
