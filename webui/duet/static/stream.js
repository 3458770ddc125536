// One answer's event stream, as the chat page and the compare page both follow it: open the
// answer's server-sent events, stamp each one's arrival, show its text and status as it comes,
// and hand every event to the page for the page's own work (its timings, its numbers, what it
// shows when the answer ends).
//
// The events, by SSE event name, with their JSON data. `t` is when the server read the event
// from the engine and `s` when it wrote it to this response, both in ms since the engine request
// was on the wire (docs/metrics.md). Every event of the answer itself has an SSE id, its place in
// the answer's stream from 0; after a dropped connection the browser reconnects by itself and
// sends the last id it saw as Last-Event-ID, and the server goes on after it, so no text is
// repeated or lost.
//   start         {started_ms}                  compare columns only, before the answer's
//                 events and without an id (sent again after a reconnect): when this answer's
//                 engine request went out, in ms after the run reached the server
//   sent          {t, after_receipt_ms, received_at, s}   the engine request is on the wire
//                 (t = 0); after_receipt_ms: Duet's own time from the user's request to here;
//                 received_at: the server's raw clock at that receipt, for benchmarks
//   reasoning     {text, t, chunk, s}           thinking text; `chunk` numbers the engine's
//   answer        {text, t, chunk, s}           chunk it came in (one chunk may bring both)
//   usage         {t, prompt_tokens, completion_tokens, s}   the engine's token counts
//   done          {t, finish_reason, s}         the engine finished the answer
//   engine_error  {t, message, status, s}       the engine failed: `message` is for a person,
//                 `status` the engine's HTTP status if it answered with one
//   end           {t, status, error, unsaved, s}   the last event: the answer ended with this
//                 status; `unsaved` says why it could not be saved (and what Duet does about
//                 it), else null. An answer that ended before the page connected gets only
//                 this event, with {status, error} and no id.

const EVENT_NAMES = [
  "start",
  "sent",
  "reasoning",
  "answer",
  "usage",
  "done",
  "engine_error",
  "end",
];

const following = new Set(); // stream URLs with an open EventSource on this page

// Follow the answer streaming at `url` into `element`, which holds its live parts:
// `[data-live-status]` (the status line, a live region for screen readers), `details.reasoning`
// (hidden until thinking arrives), `.reasoning-text` and `.answer-text`. Each event is handed
// to `on[name](data, stamp)`, where stamp.arrived is performance.now() taken on arrival, before
// the event is parsed or shown, and stamp.seq its id (null for `start` and a late `end`).
// `on.lost()` is called if the browser gives up the connection (the server refused it): then no
// event will come. Returns false, doing nothing, if this page already follows `url`.
export function followAnswer(element, url, on) {
  if (following.has(url)) return false;
  following.add(url);
  const status = element.querySelector("[data-live-status]");
  const reasoningBox = element.querySelector("details.reasoning");
  const texts = {
    reasoning: element.querySelector(".reasoning-text"),
    answer: element.querySelector(".answer-text"),
  };
  const statusFor = {
    start: () => "waiting for the first token…",
    reasoning: () => "thinking…",
    answer: () => "answering…",
    engine_error: (data) => data.message,
  };
  const source = new EventSource(url);

  for (const name of EVENT_NAMES) {
    source.addEventListener(name, (event) => {
      const stamp = { arrived: performance.now(), seq: null };
      if (event.lastEventId && name !== "start") stamp.seq = Number(event.lastEventId);
      const data = JSON.parse(event.data);
      if (name === "end") {
        source.close();
        following.delete(url);
        document.dispatchEvent(new CustomEvent("duet:answer-ended", { detail: { url } }));
      }
      if (name === "reasoning" && reasoningBox) reasoningBox.hidden = false;
      if (name in texts && texts[name]) appendText(texts[name], data.text);
      if (name in statusFor && status) status.textContent = statusFor[name](data);
      if (on[name]) on[name](data, stamp);
    });
  }
  source.addEventListener("error", () => {
    // A dropped connection is retried by the browser (readyState CONNECTING); CLOSED means it
    // gave up: the server answered with an error instead of an event stream.
    if (source.readyState !== EventSource.CLOSED) return;
    following.delete(url);
    if (status) status.textContent = "Lost this answer's stream: reload the page to see it.";
    if (on.lost) on.lost();
  });
  return true;
}

function appendText(element, text) {
  // Qwen3 opens its reasoning and its answer with newlines; in a pre-wrap box they would show
  // as blank lines above the text, so leading whitespace is dropped while the box is empty (the
  // stored answer keeps every character).
  if (!element.textContent) text = text.replace(/^\s+/, "");
  if (!text) return;
  element.append(text); // a string becomes a text node: model output is never parsed as HTML
}

// Call `connect(element)` for every element matching `selector` that htmx puts on the page, and
// for those already there when it starts.
export function onNewStreams(selector, connect) {
  htmx.onLoad((root) => {
    if (!(root instanceof Element)) return;
    const found = root.matches(selector) ? [root] : [];
    found.push(...root.querySelectorAll(selector));
    found.forEach(connect);
  });
}

// When the form with this id last sent its request (performance.now()), for the page's start of
// the answer it asked for. take() hands the time out once and forgets it, so an answer the form
// did not ask for (a regenerate, a reload) is never timed from it.
export function sendTimes(formId) {
  let sentAt = null;
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.elt && event.detail.elt.id === formId) sentAt = performance.now();
  });
  return {
    take() {
      const taken = sentAt;
      sentAt = null;
      return taken;
    },
  };
}
