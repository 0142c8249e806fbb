// Copy buttons: <button type="button" data-copy-target="ID" hidden> copies the value of the
// input with that id. The buttons start hidden and are shown here, so a page without JavaScript
// has no dead button (the readonly input can still be selected by hand). Listeners sit on the
// document, so buttons that htmx swaps in later work too.
(function () {
  "use strict";

  function reveal(root) {
    root.querySelectorAll("[data-copy-target]").forEach(function (button) { button.hidden = false; });
  }

  function flash(button, text) {
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.textContent = text;
    clearTimeout(button._copyTimer);
    button._copyTimer = setTimeout(function () { button.textContent = button.dataset.label; }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var input = document.getElementById(button.dataset.copyTarget);
    if (!input) return;
    input.select();
    if (!navigator.clipboard || !window.isSecureContext) {
      flash(button, "Press Ctrl+C");  // the text is selected: copying by hand still works
      return;
    }
    navigator.clipboard.writeText(input.value).then(
      function () { flash(button, "Copied"); },
      function () { flash(button, "Press Ctrl+C"); }
    );
  });

  // "Select all": <input type="checkbox" data-select-all="NAME" hidden> ticks every checkbox
  // named NAME on the page (shown only with JavaScript; each box can be ticked by hand).
  document.addEventListener("change", function (event) {
    var all = event.target.closest("[data-select-all]");
    if (!all) return;
    document.querySelectorAll('input[type="checkbox"][name="' + all.dataset.selectAll + '"]').forEach(function (box) {
      box.checked = all.checked;
    });
  });

  function revealSelectAll(root) {
    root.querySelectorAll("[data-select-all]").forEach(function (box) { box.hidden = false; });
  }

  document.addEventListener("DOMContentLoaded", function () { reveal(document); revealSelectAll(document); });
  document.addEventListener("htmx:load", function (event) { revealSelectAll(event.target); });
  document.addEventListener("htmx:load", function (event) { reveal(event.target); });
})();
