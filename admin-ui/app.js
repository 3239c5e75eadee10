// Basalt dashboard: small progressive enhancements. Every action also works
// without this file (plain forms and links).
(function () {
  "use strict";
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  window.Basalt = { csrf };

  // Narrow screens: the sidebar opens with the "Menu" button.
  const toggle = document.querySelector(".nav-toggle");
  const sidebar = document.getElementById("sidebar");
  if (toggle && sidebar) {
    toggle.addEventListener("click", () => {
      const open = sidebar.classList.toggle("open");
      toggle.setAttribute("aria-expanded", String(open));
    });
  }

  // <form data-confirm="Really?">: asks before submitting.
  document.addEventListener("submit", (e) => {
    const form = e.target;
    const submitter = e.submitter;
    const msg = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // <input data-confirm-match="name" data-confirm-button="id">: the button
  // is enabled once the typed text equals the expected value (the server
  // checks it again).
  document.querySelectorAll("input[data-confirm-match]").forEach((input) => {
    const button = document.getElementById(input.dataset.confirmButton);
    if (!button) return;
    const sync = () => { button.disabled = input.value !== input.dataset.confirmMatch; };
    input.addEventListener("input", sync);
    sync();
  });

  // <textarea data-json>: live JSON syntax check, with line and column.
  function position(text, offset) {
    const before = text.slice(0, offset);
    const line = before.split("\n").length;
    const col = offset - before.lastIndexOf("\n");
    return "line " + line + ", column " + col;
  }
  document.querySelectorAll("textarea[data-json]").forEach((area) => {
    let status = area.parentElement.querySelector(".json-status");
    if (!status) {
      status = document.createElement("div");
      status.className = "json-status";
      status.setAttribute("aria-live", "polite");
      area.insertAdjacentElement("afterend", status);
    }
    const check = () => {
      const text = area.value;
      if (text.trim() === "" && area.dataset.json === "optional") {
        status.textContent = ""; status.className = "json-status";
        area.removeAttribute("aria-invalid");
        return;
      }
      try {
        JSON.parse(text);
        status.textContent = "Valid JSON"; status.className = "json-status ok";
        area.removeAttribute("aria-invalid");
      } catch (err) {
        const m = /position (\d+)/.exec(err.message);
        const where = m ? " (" + position(text, Number(m[1])) + ")" : "";
        status.textContent = "JSON syntax error" + where + ": " + err.message;
        status.className = "json-status bad";
        area.setAttribute("aria-invalid", "true");
      }
    };
    area.addEventListener("input", check);
    // Tab inserts two spaces in code areas; Escape then Tab leaves the field.
    let escaped = false;
    area.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { escaped = true; return; }
      if (e.key === "Tab" && !e.shiftKey && !escaped) {
        e.preventDefault();
        const s = area.selectionStart;
        area.setRangeText("  ", s, area.selectionEnd, "end");
        check();
      }
      escaped = false;
    });
    check();
  });

  // <button data-copy="element-id">: copies that element's text.
  document.querySelectorAll("[data-copy]").forEach((btn) => {
    btn.hidden = false;
    btn.addEventListener("click", async () => {
      const el = document.getElementById(btn.dataset.copy);
      if (!el) return;
      const text = el.value !== undefined ? el.value : el.textContent;
      try {
        await navigator.clipboard.writeText(text);
        btn.textContent = "Copied";
      } catch (_) {
        if (el.select) el.select();
        btn.textContent = "Press Ctrl+C";
      }
    });
  });

  // <div data-reload-while="selector" data-reload-seconds="2">: reloads the
  // page while a progress element matching the selector is present (index
  // builds, bulk deletes).
  document.querySelectorAll("[data-reload-seconds]").forEach((el) => {
    const secs = Number(el.dataset.reloadSeconds) || 2;
    setTimeout(() => window.location.reload(), secs * 1000);
  });
})();
