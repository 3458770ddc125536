// Duet's only hand-written script: what the browser alone can do.
//  - Read each streaming answer's server-sent events and append the text as it comes (as text,
//    never as HTML); when the answer ends, htmx swaps in the server's rendered message.
//  - Stamp every event with performance.now() on arrival, next to the server's own stamps
//    (t: read from the engine, s: written to the response, ms since the engine request), in
//    window.duetTimings[messageId] for the latency timeline.
//  - Copy buttons on code blocks.
(function () {
  "use strict";

  const streams = new Map(); // message id -> EventSource
  const timings = (window.duetTimings = {});
  let sendStartedAt = null; // performance.now() when the composer's request left

  document.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.elt && event.detail.elt.id === "composer") sendStartedAt = performance.now();
  });

  function nearBottom() {
    const page = document.scrollingElement;
    return page.scrollHeight - page.scrollTop - page.clientHeight < 80;
  }

  function appendText(element, text) {
    // Qwen3 opens its reasoning and its answer with newlines; in a pre-wrap box they would
    // show as blank lines above the text, so leading whitespace is dropped (the stored message
    // keeps every character).
    if (!element.textContent) text = text.replace(/^\s+/, "");
    if (!text) return;
    const follow = nearBottom();
    element.append(text); // a string becomes a text node: model output is never parsed as HTML
    if (follow) window.scrollTo(0, document.scrollingElement.scrollHeight);
  }

  function connect(article) {
    const id = article.dataset.messageId;
    if (streams.has(id)) return;
    const timing = { sendStartedAt, openedAt: performance.now(), events: [] };
    sendStartedAt = null;
    timings[id] = timing;

    const reasoningBox = article.querySelector(".reasoning");
    const reasoningText = article.querySelector(".reasoning-text");
    const answerText = article.querySelector(".answer-text");
    const liveStatus = article.querySelector("[data-live-status]");
    const source = new EventSource(article.dataset.stream);
    streams.set(id, source);

    function record(kind, event) {
      const arrived = performance.now();
      const data = JSON.parse(event.data);
      timing.events.push({ seq: Number(event.lastEventId), kind, t: data.t, s: data.s, arrived });
      return data;
    }

    source.addEventListener("reasoning", (event) => {
      const data = record("reasoning", event);
      if (reasoningBox.hidden) reasoningBox.hidden = false;
      if (liveStatus) liveStatus.textContent = "thinking…";
      appendText(reasoningText, data.text);
    });
    source.addEventListener("answer", (event) => {
      const data = record("answer", event);
      if (liveStatus) liveStatus.textContent = "answering…";
      appendText(answerText, data.text);
    });
    source.addEventListener("usage", (event) => record("usage", event));
    source.addEventListener("done", (event) => record("done", event));
    source.addEventListener("engine_error", (event) => {
      const data = record("engine_error", event);
      if (liveStatus) liveStatus.textContent = data.message;
    });
    source.addEventListener("end", () => {
      source.close();
      streams.delete(id);
      showStoredMessage(id);
    });
    // Connection errors: the browser reconnects by itself, sending Last-Event-ID, and the
    // server resumes after the last event received, so no text is repeated or lost.
  }

  function showStoredMessage(id) {
    const article = document.getElementById("message-" + id);
    // Stop already swapped it in if the article has no stream any more.
    if (article && article.dataset.stream) {
      htmx.ajax("GET", "/messages/" + id, { target: article, swap: "outerHTML" });
    }
  }

  htmx.onLoad((root) => {
    if (!(root instanceof Element)) return;
    const articles = root.matches("[data-stream]") ? [root] : [];
    articles.push(...root.querySelectorAll("[data-stream]"));
    articles.forEach(connect);
  });

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    // Plain http on a LAN has no clipboard API: fall back to a selected, hidden textarea.
    const scratch = document.createElement("textarea");
    scratch.value = text;
    scratch.setAttribute("readonly", "");
    scratch.style.position = "fixed";
    scratch.style.opacity = "0";
    document.body.append(scratch);
    scratch.select();
    document.execCommand("copy");
    scratch.remove();
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest(".copy-code");
    if (!button) return;
    const code = button.parentElement.querySelector("code");
    try {
      await copyText(code.textContent);
      button.textContent = "Copied";
    } catch (error) {
      button.textContent = "Copy failed";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
})();
