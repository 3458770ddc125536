// The chat page's script. stream.js shows each streaming answer as it comes; this page keeps
// the arrival stamps of every event in window.duetTimings[messageId] (beside the server's own
// `t` and `s`), and when the answer ends swaps in the server's rendering of the stored message.
// follow.js keeps the latest message in view while the reader is at the foot of the page.
import { followConversation } from "./follow.js";
import { followAnswer, onNewStreams, sendTimes } from "./stream.js";

const timings = (window.duetTimings = {});
const composerSends = sendTimes("composer");

function connect(article) {
  const id = article.dataset.messageId;
  const timing = { sendStartedAt: null, openedAt: performance.now(), events: [] };
  const record = (kind) => (data, stamp) => {
    timing.events.push({ seq: stamp.seq, kind, t: data.t, s: data.s, arrived: stamp.arrived });
  };
  const followed = followAnswer(article, article.dataset.stream, {
    sent: record("sent"),
    reasoning: record("reasoning"),
    answer: record("answer"),
    usage: record("usage"),
    done: record("done"),
    engine_error: record("engine_error"),
    end: () => showStoredMessage(id),
  });
  if (!followed) return;
  timing.sendStartedAt = composerSends.take();
  timings[id] = timing;
}

function showStoredMessage(id) {
  const article = document.getElementById("message-" + id);
  // Stop already swapped it in if the article has no stream any more.
  if (article && article.dataset.stream) {
    htmx.ajax("GET", "/messages/" + id, { target: article, swap: "outerHTML" });
  }
}

onNewStreams("[data-stream]", connect);

const view = followConversation(
  document.querySelector("main.chat"),
  document.getElementById("jump-latest"),
);
// Sending, resending or regenerating is asking to see the answer: follow it from wherever the
// reader was. Opening a message's edit box is working above the foot: hold still.
const ASKS_FOR_AN_ANSWER = "#composer, .edit-form, button.regenerate, .answer-again";
document.addEventListener("htmx:beforeRequest", (event) => {
  if (event.detail.elt.matches(ASKS_FOR_AN_ANSWER)) view.toFoot();
  else if (event.detail.elt.matches("button.edit")) view.hold();
});

// An edit box shows between the sticky site navigation and the sticky composer, not under
// either (the page's scroll padding, duet.css); when the composer's open Settings leave it no
// room, they fold (their values are still sent with the edit).
function revealEditBox(article) {
  const composer = document.getElementById("composer");
  const settings = composer.querySelector("details.settings");
  const navigation = document.querySelector(".site-nav");
  const above = navigation ? navigation.getBoundingClientRect().bottom : 0;
  const room = composer.getBoundingClientRect().top - above;
  if (settings.open && article.offsetHeight > room) settings.open = false;
  article.scrollIntoView({ block: "nearest" });
}

htmx.onLoad((root) => {
  if (root instanceof Element && root.matches("article.editing")) revealEditBox(root);
});

// Stop in the composer, or Esc anywhere not spent on something else (an edit box, a menu, the
// drawer), stops the answer that is streaming: its own Stop button does the work.
function stopStreaming() {
  const stop = document.querySelector("#messages [data-stream] button.stop");
  if (stop) stop.click();
  return Boolean(stop);
}

document.querySelector(".composer-stop").addEventListener("click", stopStreaming);
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  if (document.body.classList.contains("drawer-open")) return;
  if (stopStreaming()) event.preventDefault();
});

// The sidebar as a drawer on a narrow screen (duet.css shows the toggle only there): the toggle
// opens it over the page; the backdrop, Esc, or going to a conversation closes it.
const drawerToggle = document.querySelector(".drawer-toggle");
const backdrop = document.querySelector(".drawer-backdrop");

function setDrawer(open) {
  document.body.classList.toggle("drawer-open", open);
  drawerToggle.setAttribute("aria-expanded", String(open));
  backdrop.hidden = !open;
  if (open) document.querySelector("#sidebar .search").focus();
}

drawerToggle.addEventListener("click", () => setDrawer(!document.body.classList.contains("drawer-open")));
backdrop.addEventListener("click", () => setDrawer(false));
document.addEventListener("keydown", (event) => {
  const open = document.body.classList.contains("drawer-open");
  if (event.key === "Escape" && open && !event.defaultPrevented) {
    event.preventDefault();
    setDrawer(false);
    drawerToggle.focus();
  }
});

// Two tabs on one conversation stay in step. A tab that sends, edits or regenerates tells the
// others of this browser (a BroadcastChannel); one that shows the same conversation
// loads its messages again, and follows the new answer as it streams. A tab that comes back
// into view (another device may have written) does the same. Not while this tab streams an
// answer (its stream writes into the messages it shows) or holds an edit box open.
const tabs = "BroadcastChannel" in window ? new BroadcastChannel("duet-conversations") : null;
const CHANGES_THE_CONVERSATION =
  "#composer, .edit-form, button.regenerate, .answer-again, .show-version, .continue-from";

const shownConversation = () => document.getElementById("conversation-id").value;

function reloadMessages() {
  const id = shownConversation();
  if (!id || document.querySelector("#messages [data-stream], #messages .edit-form")) return;
  htmx.ajax("GET", "/c/" + id, {
    target: "#messages",
    select: "#messages",
    selectOOB: "#conversation-title",
    swap: "outerHTML",
  });
}

document.addEventListener("htmx:afterRequest", (event) => {
  if (!tabs || !event.detail.successful) return;
  if (!event.detail.elt.matches(CHANGES_THE_CONVERSATION)) return;
  tabs.postMessage({ conversation: shownConversation() });
});
if (tabs) {
  tabs.addEventListener("message", (event) => {
    if (event.data.conversation && event.data.conversation === shownConversation()) {
      reloadMessages();
    }
  });
}
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") reloadMessages();
});
