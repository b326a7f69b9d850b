// Live preview of a status update's public rendering: the body is posted to the admin's preview
// endpoint, which answers with the HTML the status page will show (rendered and sanitized on
// the server by the same function as the page). Without JavaScript, the preview shows the saved
// body.
(function () {
  "use strict";
  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }
  ready(function () {
    var body = document.getElementById("id_body");
    var preview = document.getElementById("status-update-preview");
    if (!body || !preview) return;
    var token = document.querySelector("input[name=csrfmiddlewaretoken]");
    var timer = null;
    function refresh() {
      var data = new FormData();
      data.append("body", body.value);
      fetch(preview.dataset.url, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": token ? token.value : "" },
      })
        .then(function (response) {
          return response.ok ? response.json() : null;
        })
        .then(function (result) {
          // The server's sanitized HTML (nh3 allowlist), never the typed text itself.
          if (result) preview.innerHTML = result.html;
        })
        .catch(function () {});
    }
    body.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(refresh, 300);
    });
    if (body.value) refresh();
  });
})();
