// Every page's script: what the templates would otherwise ask of inline handlers, which the
// Content-Security-Policy forbids (script-src 'self': no inline script, and htmx may not eval).
//  - A textarea with data-send-shortcut submits its form on Ctrl+Enter (⌘+Enter on a Mac).
//  - A textarea with data-clear-after-send is emptied when its form's request succeeds.
//  - Copy buttons on code blocks.

document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
  const box = event.target;
  if (!(box instanceof HTMLTextAreaElement) || !box.hasAttribute("data-send-shortcut")) return;
  if (!box.form) return;
  event.preventDefault();
  box.form.requestSubmit(); // a submit event, as the Send button gives: htmx sends the form
});

document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  if (!event.detail.successful || !(form instanceof HTMLFormElement)) return;
  form.querySelectorAll("textarea[data-clear-after-send]").forEach((box) => (box.value = ""));
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
