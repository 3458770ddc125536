// The compare page's script: what only the browser can do.
//  - Open one EventSource per column: every answer streams on its own connection, so no column
//    waits for another.
//  - Stamp each text event with performance.now() on arrival, before touching the page, and
//    when the stream ends post those stamps to the server, which stores them as the browser hop
//    and answers with the column rendered with both hops' numbers and the timeline.
// The browser's start of an answer is when this page sent the prompt plus the server's
// `started_ms` (when that answer's engine request went out, counted from the server's receipt of
// the prompt): durations on each side, so the two clocks are never compared. A page that did not
// send the prompt (a reload, another tab) has no start, shows the stream, and measures nothing.
(function () {
  "use strict";

  const sources = new Map(); // answer id -> EventSource
  const measured = (window.duetCompare = {}); // answer id -> {startAt, arrivals}, for debugging
  let promptSentAt = null; // performance.now() when the compare form's request left

  document.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.elt && event.detail.elt.id === "compare-form") {
      promptSentAt = performance.now();
    }
  });

  function connect(column) {
    const id = column.dataset.answerId;
    if (sources.has(id)) return;
    const sentAt = promptSentAt;
    const state = { startAt: null, arrivals: [], chunks: new Set(), serverTtft: null };
    measured[id] = state;

    const liveStatus = column.querySelector("[data-live-status]");
    const live = (name) => column.querySelector(`[data-live="${name}"]`);
    const reasoningBox = column.querySelector(".reasoning");
    const reasoningText = column.querySelector(".reasoning-text");
    const answerText = column.querySelector(".answer-text");
    const source = new EventSource(column.dataset.compareStream);
    sources.set(id, source);

    source.addEventListener("start", (event) => {
      const data = JSON.parse(event.data);
      // Only the first start counts: a reconnect sends it again.
      if (sentAt !== null && state.startAt === null) state.startAt = sentAt + data.started_ms;
      if (liveStatus) liveStatus.textContent = "waiting for the first token…";
    });

    function onText(kind, event) {
      const arrived = performance.now(); // first, before any parsing or rendering
      const data = JSON.parse(event.data);
      if (!data.text) return;
      state.arrivals.push([arrived, data.chunk, kind === "reasoning" ? "r" : "a", data.text.length]);
      if (!state.chunks.size) {
        state.serverTtft = data.t;
        live("server-ttft").textContent = data.t.toFixed(1) + " ms";
        if (state.startAt !== null) {
          live("browser-ttft").textContent = (arrived - state.startAt).toFixed(1) + " ms";
        } else {
          live("browser-ttft").textContent = "not measured here";
        }
      }
      state.chunks.add(data.chunk);
      live("chunks").textContent = String(state.chunks.size);
      if (kind === "reasoning") {
        reasoningBox.hidden = false;
        if (liveStatus) liveStatus.textContent = "thinking…";
        reasoningText.append(data.text); // text nodes: model output is never parsed as HTML
      } else {
        if (liveStatus) liveStatus.textContent = "answering…";
        answerText.append(data.text);
      }
    }

    source.addEventListener("reasoning", (event) => onText("reasoning", event));
    source.addEventListener("answer", (event) => onText("answer", event));
    source.addEventListener("engine_error", (event) => {
      if (liveStatus) liveStatus.textContent = JSON.parse(event.data).message;
    });
    source.addEventListener("end", () => {
      source.close();
      sources.delete(id);
      finish(id, state);
    });
    // Connection errors: EventSource reconnects by itself with Last-Event-ID, and the server
    // resumes after the last event received.
  }

  async function finish(id, state) {
    let response = null;
    if (state.startAt !== null) {
      const arrivals = state.arrivals.map(([at, chunk, kind, chars]) => [
        Math.max(0, at - state.startAt),
        chunk,
        kind,
        chars,
      ]);
      response = await fetch(`/compare/answers/${id}/browser`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ arrivals }),
      });
      if (!response.ok) {
        console.warn("duet: the browser timings were refused:", await response.text());
        response = null;
      }
    }
    if (response === null) response = await fetch(`/compare/answers/${id}`);
    replaceColumn(id, await response.text());
  }

  function replaceColumn(id, html) {
    const column = document.getElementById("answer-" + id);
    if (!column) return;
    const template = document.createElement("template");
    template.innerHTML = html.trim(); // the server's own rendering, model text escaped there
    const fresh = template.content.firstElementChild;
    column.replaceWith(fresh);
    htmx.process(fresh);
  }

  htmx.onLoad((root) => {
    if (!(root instanceof Element)) return;
    const columns = root.matches("[data-compare-stream]") ? [root] : [];
    columns.push(...root.querySelectorAll("[data-compare-stream]"));
    columns.forEach(connect);
  });
})();
