// Collections pages: small enhancements; the forms work without them.
(function () {
  "use strict";

  // Rule rows: the expression box is only used with "Only when…". Typing
  // into it picks that choice; with another choice the box is greyed out
  // and left out of the post (so the server does not see a leftover
  // expression it would have to refuse).
  const rows = [];
  document.querySelectorAll("select[data-rule-mode]").forEach((select) => {
    const input = document.getElementById(select.dataset.ruleMode);
    if (!input) return;
    rows.push([select, input]);
    const sync = () => input.parentElement.classList.toggle("off", select.value !== "expr");
    select.addEventListener("change", () => {
      sync();
      if (select.value === "expr") input.focus();
    });
    input.addEventListener("input", () => {
      if (input.value.trim() !== "" && select.value !== "expr") { select.value = "expr"; sync(); }
    });
    sync();
  });
  document.addEventListener("submit", () => {
    rows.forEach(([select, input]) => { if (select.value !== "expr") input.disabled = true; });
  });
  // Back from the next page (bfcache): the boxes are usable again.
  window.addEventListener("pageshow", () => rows.forEach(([, input]) => { input.disabled = false; }));

  // New collection: the auth-only fieldset is shown for type "auth" only.
  const type = document.querySelector("select[data-coll-type]");
  const authOnly = document.querySelector("[data-auth-only]");
  if (type && authOnly) {
    const sync = () => {
      const auth = type.value === "auth";
      authOnly.hidden = !auth;
      authOnly.disabled = !auth;
    };
    type.addEventListener("change", sync);
    sync();
  }

  // Index builds: the page reloads itself while one runs (data-reload-seconds,
  // handled by app.js). Not while the user is editing the form, though:
  // take the attribute over (this script runs before app.js) and reload only
  // while the form is untouched.
  const progress = document.querySelector(".index-status[data-reload-seconds]");
  const form = document.getElementById("collection-form");
  if (progress && form) {
    const secs = Number(progress.dataset.reloadSeconds) || 2;
    progress.removeAttribute("data-reload-seconds");
    let dirty = false;
    form.addEventListener("input", () => { dirty = true; });
    form.addEventListener("change", () => { dirty = true; });
    const tick = () => {
      if (!dirty) { window.location.reload(); return; }
      const note = document.createElement("p");
      note.className = "hint";
      note.textContent = "Progress updates are paused while you edit; save or reload to see them.";
      progress.insertAdjacentElement("afterend", note);
    };
    setTimeout(tick, secs * 1000);
  }
})();
