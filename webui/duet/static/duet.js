// Every page's script: what the templates would otherwise ask of inline handlers, which the
// Content-Security-Policy forbids (script-src 'self': no inline script, and htmx may not eval).
//  - "Enter sends" (a box in Settings, kept in this browser's localStorage): Enter alone sends
//    from those textareas too, Shift+Enter makes a new line; never while an input method is
//    composing (Chinese, Japanese), where Enter picks the characters.
//  - A textarea with data-send-shortcut submits its form on Ctrl+Enter (⌘+Enter on a Mac); one
//    with data-escape-cancels presses its form's [data-cancel] button on Esc.
//  - A textarea with data-clear-after-send is emptied when its form's request succeeds. Until
//    then what is typed in it is kept for the tab (sessionStorage, per page): a send that meets
//    an expired session goes to sign in and back, and finds the text in the box again.
//    Signing out forgets every such draft, so the next person at that tab does not see them.
//  - A field the browser finds invalid when its form is sent (a sampling value out of range)
//    shows why next to itself, and a folded <details> around it (Settings) opens: otherwise
//    Send would do nothing visible. What was typed in the form stays.
//  - A message box with data-max-chars says it is too long as soon as it is, under itself, and
//    the form is not sent until it is short enough.
//  - The banner in #flash says why a request was refused. It goes once its cause has: when the
//    form (or control) that sent the refused request is changed or succeeds, and for a refusal
//    because an answer was streaming (409), when an answer ends (the pages dispatch
//    "duet:answer-ended").
//  - Menus (<details data-menu>, the sidebar's ⋯): one open at a time; a click outside one, a
//    choice in it, or Esc closes it.
//  - Ctrl+Shift+O (⌘+Shift+O) starts a new chat, from any page.
//  - Copy buttons on code blocks, and on messages (a message's Markdown source, kept in a
//    <template> beside it).
//  - <time datetime> elements show their moment in the reader's own time zone.

document.addEventListener("keydown", (event) => {
  const box = event.target;
  if (event.key !== "Escape" || !(box instanceof HTMLTextAreaElement)) return;
  const cancel = box.hasAttribute("data-escape-cancels") && box.form?.querySelector("[data-cancel]");
  if (!cancel) return;
  event.preventDefault();
  cancel.click();
});

const ENTER_SENDS = "duet:enter-sends";

function enterSends() {
  try {
    return localStorage.getItem(ENTER_SENDS) === "1";
  } catch {
    return false;
  }
}

document.querySelectorAll("input[data-enter-sends]").forEach((box) => (box.checked = enterSends()));
document.addEventListener("change", (event) => {
  if (!event.target.matches("input[data-enter-sends]")) return;
  try {
    localStorage.setItem(ENTER_SENDS, event.target.checked ? "1" : "0");
  } catch {
    // Storage turned off: the setting lasts for this page only.
  }
});

function sendsOnEnter(event) {
  if (event.key !== "Enter" || event.isComposing || event.keyCode === 229) return false;
  if (event.ctrlKey || event.metaKey) return true;
  return !event.shiftKey && !event.altKey && enterSends();
}

document.addEventListener("keydown", (event) => {
  if (!sendsOnEnter(event)) return;
  const box = event.target;
  if (!(box instanceof HTMLTextAreaElement) || !box.hasAttribute("data-send-shortcut")) return;
  if (!box.form) return;
  event.preventDefault();
  box.form.requestSubmit(); // a submit event, as the Send button gives: htmx sends the form
});

const DRAFTS = "duet:draft:";
const KEPT_BOXES = "textarea[data-clear-after-send]";
const draftKey = (box) => DRAFTS + location.pathname + "#" + box.name;
const sentDrafts = new WeakMap(); // a request → the draft keys of the boxes it sends

function keepDraft(key, text) {
  try {
    if (text) sessionStorage.setItem(key, text);
    else sessionStorage.removeItem(key);
  } catch {
    // Storage full or turned off: the box still works, only without the draft.
  }
}

function restoreDrafts() {
  document.querySelectorAll(KEPT_BOXES).forEach((box) => {
    let draft = null;
    try {
      draft = sessionStorage.getItem(draftKey(box));
    } catch {
      return;
    }
    if (draft && !box.value) box.value = draft;
  });
}

function forgetDrafts() {
  try {
    Object.keys(sessionStorage)
      .filter((key) => key.startsWith(DRAFTS))
      .forEach((key) => sessionStorage.removeItem(key));
  } catch {
    // Nothing could be kept either.
  }
}

document.addEventListener("input", (event) => {
  const box = event.target;
  if (box instanceof HTMLTextAreaElement && box.matches(KEPT_BOXES)) {
    keepDraft(draftKey(box), box.value);
  }
});

// The page's URL when the send starts: a new chat's first answer moves it to the conversation's.
document.addEventListener("htmx:beforeRequest", (event) => {
  const form = event.detail.elt;
  if (!(form instanceof HTMLFormElement)) return;
  const keys = [...form.querySelectorAll(KEPT_BOXES)].map(draftKey);
  if (keys.length) sentDrafts.set(event.detail.xhr, keys);
});

document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  if (!event.detail.successful || !(form instanceof HTMLFormElement)) return;
  // The form's own request only: when an element that asked for something replaces itself,
  // htmx reports its request again on the nearest ancestor still in the page, which can be
  // this form, while requestConfig.elt still names the element that asked.
  const asking = event.detail.requestConfig && event.detail.requestConfig.elt;
  if (asking && asking !== form) return;
  form.querySelectorAll(KEPT_BOXES).forEach((box) => (box.value = ""));
  (sentDrafts.get(event.detail.xhr) || []).forEach((key) => keepDraft(key, ""));
});

document.addEventListener("submit", (event) => {
  const form = event.target;
  const to = form.getAttribute("hx-post") || form.getAttribute("action") || "";
  if (new URL(to, location.href).pathname === "/signout") forgetDrafts();
});

restoreDrafts();
document.addEventListener("htmx:historyRestore", restoreDrafts);

// `invalid` does not bubble: listen in the capture phase, for every form on the page.
document.addEventListener("invalid", (event) => showFieldError(event.target), true);

function showFieldError(field) {
  for (let box = field.closest("details"); box; box = box.parentElement.closest("details")) {
    box.open = true;
  }
  const id = field.name + "-error";
  let note = document.getElementById(id);
  if (!note) {
    note = document.createElement("span");
    note.id = id;
    note.className = "field-error";
    note.setAttribute("role", "alert");
    field.after(note);
  }
  note.textContent = field.validationMessage;
  field.setAttribute("aria-invalid", "true");
  field.setAttribute("aria-describedby", id);
}

function clearFieldError(field) {
  if (field.getAttribute("aria-invalid") !== "true" || !field.validity.valid) return;
  document.getElementById(field.getAttribute("aria-describedby"))?.remove();
  field.removeAttribute("aria-invalid");
  field.removeAttribute("aria-describedby");
}

document.addEventListener("input", (event) => clearFieldError(event.target));

function checkLength(box) {
  const limit = Number(box.dataset.maxChars);
  const length = box.value.length;
  box.setCustomValidity(
    length > limit
      ? `The message is ${length.toLocaleString("en")} characters long; ` +
          `the limit is ${limit.toLocaleString("en")}.`
      : "",
  );
  if (length > limit) showFieldError(box);
  else clearFieldError(box);
}

document.addEventListener("input", (event) => {
  if (event.target instanceof HTMLTextAreaElement && event.target.dataset.maxChars) {
    checkLength(event.target);
  }
});

let refused = null; // {by: the form or control whose request #flash answers, status}

function clearFlash() {
  document.getElementById("flash")?.replaceChildren();
  refused = null;
}

document.addEventListener("htmx:afterRequest", (event) => {
  const elt = event.detail.elt;
  const by = elt.closest("form") || elt;
  if (event.detail.failed && event.detail.target?.id === "flash") {
    refused = { by, status: event.detail.xhr.status };
  } else if (event.detail.successful && refused && refused.by === by) {
    clearFlash();
  }
});

for (const name of ["input", "change"]) {
  document.addEventListener(name, (event) => {
    if (refused && refused.by.contains(event.target)) clearFlash();
  });
}

document.addEventListener("duet:answer-ended", () => {
  if (refused && refused.status === 409) clearFlash();
});

const MENUS = "details[data-menu]";

const openMenus = () => document.querySelectorAll(MENUS + "[open]");

// `toggle` does not bubble: listen in the capture phase.
document.addEventListener(
  "toggle",
  (event) => {
    const menu = event.target;
    if (!(menu instanceof HTMLDetailsElement) || !menu.matches(MENUS) || !menu.open) return;
    openMenus().forEach((other) => other !== menu && (other.open = false));
  },
  true,
);

document.addEventListener("click", (event) => {
  const chosen = event.target.closest(`${MENUS} .menu a, ${MENUS} .menu button`);
  openMenus().forEach((menu) => {
    if (!menu.contains(event.target) || menu.contains(chosen)) menu.open = false;
  });
});

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || !openMenus().length) return;
  event.preventDefault(); // this Esc is spent: nothing else closes on it
  openMenus().forEach((menu) => {
    const hadFocus = menu.contains(document.activeElement);
    menu.open = false;
    if (hadFocus) menu.querySelector("summary").focus();
  });
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
  scratch.className = "copy-scratch";
  document.body.append(scratch);
  scratch.select();
  document.execCommand("copy");
  scratch.remove();
}

function textToCopy(button) {
  if (button.matches(".copy-code")) return button.parentElement.querySelector("code").textContent;
  const source = button.closest("article").querySelector("template.message-source");
  return source.content.textContent;
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest(".copy-code, .copy-message");
  if (!button) return;
  const label = button.textContent;
  try {
    await copyText(textToCopy(button));
    button.textContent = "Copied";
  } catch (error) {
    button.textContent = "Copy failed";
  }
  setTimeout(() => (button.textContent = label), 1500);
});

document.addEventListener("keydown", (event) => {
  if (event.key.toLowerCase() !== "o" || !event.shiftKey || !(event.ctrlKey || event.metaKey)) {
    return;
  }
  event.preventDefault();
  location.href = "/";
});

const sameDay = (a, b) => a.toDateString() === b.toDateString();

function showLocalTimes(root) {
  root.querySelectorAll("time[datetime]").forEach((element) => {
    const moment = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) return;
    const clock = moment.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    element.textContent = sameDay(moment, new Date())
      ? clock
      : moment.toLocaleDateString([], { day: "numeric", month: "short" }) + ", " + clock;
    element.title = moment.toLocaleString();
  });
}

showLocalTimes(document);
document.addEventListener("htmx:load", (event) => showLocalTimes(event.detail.elt));
