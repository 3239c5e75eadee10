// Records browser: a "select all" checkbox for the table (the per-row
// checkboxes work without this file).
(function () {
  "use strict";
  document.querySelectorAll("input[data-select-all]").forEach((all) => {
    const form = all.form;
    if (!form) return;
    const boxes = () => Array.from(form.querySelectorAll('input[type=checkbox][name="' + all.dataset.selectAll + '"]'));
    all.hidden = false;
    all.addEventListener("change", () => boxes().forEach((b) => { b.checked = all.checked; }));
    form.addEventListener("change", (e) => {
      if (e.target === all) return;
      const list = boxes();
      all.checked = list.length > 0 && list.every((b) => b.checked);
      all.indeterminate = !all.checked && list.some((b) => b.checked);
    });
  });
})();

// Record form: files dropped anywhere on a file field's box go to its
// input, as if picked (the input alone already takes files without this).
(function () {
  "use strict";
  document.querySelectorAll("[data-file-drop]").forEach((box) => {
    const input = box.querySelector("input[type=file]");
    if (!input) return;
    const on = (e) => { e.preventDefault(); box.classList.add("dragging"); };
    const off = () => box.classList.remove("dragging");
    box.addEventListener("dragover", on);
    box.addEventListener("dragenter", on);
    box.addEventListener("dragleave", off);
    box.addEventListener("drop", (e) => {
      e.preventDefault();
      off();
      const files = e.dataTransfer && e.dataTransfer.files;
      if (!files || files.length === 0) return;
      if (input.multiple) {
        input.files = files;
      } else {
        const one = new DataTransfer();
        one.items.add(files[0]);
        input.files = one.files;
      }
      input.dispatchEvent(new Event("change", { bubbles: true }));
    });
  });
})();
