// The compare page's script. Every column streams on its own connection (stream.js shows its
// text as it comes), so no column waits for another. This page counts each column's chunks and
// shows its time to first token as it arrives, and when the column's stream ends posts the
// arrival stamps of its text to the server, which stores them as the browser hop and answers
// with the column rendered with both hops' numbers and the timeline.
// The browser's start of an answer is when this page sent the prompt plus the server's
// `started_ms` (when that answer's engine request went out, counted from the server's receipt of
// the prompt): durations on each side, so the two clocks are never compared. A page that did not
// send the prompt (a reload, another tab) has no start, shows the stream, and measures nothing.
import { followAnswer, onNewStreams, sendTimes } from "./stream.js";

const measured = (window.duetCompare = {}); // answer id -> {startAt, arrivals}, for debugging
const promptSends = sendTimes("compare-form");

function connect(column, sentAt) {
  const id = column.dataset.answerId;
  const state = { startAt: null, arrivals: [], chunks: new Set() };
  const live = (name) => column.querySelector(`[data-live="${name}"]`);

  function onText(kind, data, stamp) {
    if (!data.text) return;
    const arrival = [stamp.arrived, data.chunk, kind === "reasoning" ? "r" : "a", data.text.length];
    state.arrivals.push(arrival);
    if (!state.chunks.size) {
      live("server-ttft").textContent = data.t.toFixed(1) + " ms";
      const browserTtft = state.startAt === null ? null : stamp.arrived - state.startAt;
      live("browser-ttft").textContent =
        browserTtft === null ? "not measured here" : browserTtft.toFixed(1) + " ms";
    }
    state.chunks.add(data.chunk);
    live("chunks").textContent = String(state.chunks.size);
  }

  const followed = followAnswer(column, column.dataset.compareStream, {
    start: (data) => {
      // Only the first start counts: a reconnect sends it again.
      if (sentAt !== null && state.startAt === null) state.startAt = sentAt + data.started_ms;
    },
    reasoning: (data, stamp) => onText("reasoning", data, stamp),
    answer: (data, stamp) => onText("answer", data, stamp),
    end: () => finish(id, state),
  });
  if (followed) measured[id] = state;
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
  await shareScale(id);
}

// A column is drawn when its answer ends, on the time scale of what the run had by then; once
// the run's last column has ended, the others are drawn again, so every timeline of the run has
// the one scale the run's own page uses.
async function shareScale(id) {
  const run = document.getElementById("answer-" + id)?.closest("[data-run-id]");
  if (!run || run.querySelector("[data-compare-stream]")) return;
  const timelines = [...run.querySelectorAll("svg[data-timeline]")];
  if (new Set(timelines.map((svg) => svg.dataset.scaleMs)).size <= 1) return;
  for (const column of run.querySelectorAll(".compare-answer")) {
    const response = await fetch(`/compare/answers/${column.dataset.answerId}`);
    if (response.ok) replaceColumn(column.dataset.answerId, await response.text());
  }
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

// A run's columns all answer the same send of the prompt: the first to connect takes its time.
const runSentAt = new Map(); // run id -> performance.now() when this page sent its prompt

function sentAtOf(column) {
  const runId = column.closest("[data-run-id]")?.dataset.runId;
  if (!runSentAt.has(runId)) runSentAt.set(runId, promptSends.take());
  return runSentAt.get(runId);
}

onNewStreams("[data-compare-stream]", (column) => connect(column, sentAtOf(column)));
