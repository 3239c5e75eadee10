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
