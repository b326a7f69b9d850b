// The review page's Cite buttons: paste a timeline entry's link into the section being written
// (the last section textarea that had the focus; the first one otherwise).
(function () {
  "use strict";
  var last = null;
  document.addEventListener("focusin", function (event) {
    if (event.target.classList && event.target.classList.contains("vigil-section-text")) {
      last = event.target;
    }
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest(".vigil-cite") : null;
    if (!button) return;
    var target = last || document.querySelector(".vigil-section-text");
    if (!target) return;
    var text = button.getAttribute("data-cite");
    var start = target.selectionStart || target.value.length;
    var end = target.selectionEnd || start;
    target.value = target.value.slice(0, start) + text + target.value.slice(end);
    target.focus();
    target.selectionStart = target.selectionEnd = start + text.length;
  });
})();
