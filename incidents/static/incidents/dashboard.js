/* The admin index's "What needs you now" list, made live.

   The server renders everything (the countdowns as text, the "Updated" time); htmx asks for the
   list again every few seconds (hx-get / hx-trigger on #vigil-needs). This script only:
   - ticks each countdown every second from its data-deadline (corrected by the server's clock,
     data-now), with the server's words: "7 min left", "3 min over";
   - marks the rows that were not in the list before the last refresh (vigil-need-new);
   - on request ("Notify me of new Sev 1-2"), shows a browser notification for each Sev 1 or 2
     incident that appears in the list after the page was opened. The choice is kept in
     localStorage. */
(function () {
  "use strict";

  var OPT_IN_KEY = "vigil.dashboard.notify-sev12";
  var skew = 0; // server time minus this browser's time, in ms
  var knownRows = null; // row keys in the list before the coming refresh
  var seenIncidents = new Set(); // Sev 1-2 incident ids already in the list

  function durationText(seconds) {
    seconds = Math.floor(Math.abs(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 48) return minutes ? hours + " h " + minutes + " min" : hours + " h";
    var days = Math.floor(hours / 24);
    hours = hours % 24;
    return hours ? days + " d " + hours + " h" : days + " d";
  }

  function list() {
    return document.getElementById("vigil-needs");
  }

  function readSkew() {
    var el = list();
    var serverNow = el && Date.parse(el.dataset.now);
    skew = serverNow ? serverNow - Date.now() : 0;
  }

  function tick() {
    var now = Date.now() + skew;
    document.querySelectorAll("#vigil-needs [data-deadline]").forEach(function (el) {
      var deadline = Date.parse(el.dataset.deadline);
      if (isNaN(deadline)) return;
      var remaining = (deadline - now) / 1000;
      var text = durationText(remaining) + (remaining < 0 ? " over" : " left");
      if (el.textContent !== text) el.textContent = text;
      if (remaining < 0 && !el.classList.contains("vigil-clock-breached")) {
        el.classList.remove("vigil-clock-running", "vigil-clock-warning");
        el.classList.add("vigil-clock-breached");
      }
    });
  }

  function rowKeys() {
    var keys = new Set();
    document.querySelectorAll("#vigil-needs [data-row-key]").forEach(function (row) {
      keys.add(row.dataset.rowKey);
    });
    return keys;
  }

  function markNewRows() {
    if (knownRows === null) return;
    document.querySelectorAll("#vigil-needs [data-row-key]").forEach(function (row) {
      if (!knownRows.has(row.dataset.rowKey)) row.classList.add("vigil-need-new");
    });
  }

  function urgentRows() {
    return document.querySelectorAll(
      '#vigil-needs [data-incident-id][data-severity="1"], #vigil-needs [data-incident-id][data-severity="2"]'
    );
  }

  function optedIn() {
    try {
      return (
        "Notification" in window &&
        Notification.permission === "granted" &&
        window.localStorage.getItem(OPT_IN_KEY) === "on"
      );
    } catch (e) {
      return false;
    }
  }

  function notifyNewIncidents() {
    urgentRows().forEach(function (row) {
      var id = row.dataset.incidentId;
      if (seenIncidents.has(id)) return;
      seenIncidents.add(id);
      if (!optedIn()) return;
      var note = new Notification(
        "Sev " + row.dataset.severity + ": " + row.dataset.incidentNumber,
        { body: row.dataset.title, tag: "vigil-incident-" + id }
      );
      note.onclick = function () {
        window.focus();
        window.location.href = row.dataset.url;
      };
    });
  }

  function rememberIncidents() {
    urgentRows().forEach(function (row) {
      seenIncidents.add(row.dataset.incidentId);
    });
  }

  function showNotifyButton() {
    var button = document.querySelector("[data-vigil-notify]");
    if (!button || !("Notification" in window)) return;
    function label() {
      if (optedIn()) {
        button.textContent = "Notifying you of new Sev 1–2 (turn off)";
        button.setAttribute("aria-pressed", "true");
      } else {
        button.textContent =
          Notification.permission === "denied"
            ? "Notifications are blocked by this browser"
            : "Notify me of new Sev 1–2";
        button.setAttribute("aria-pressed", "false");
      }
      button.disabled = !optedIn() && Notification.permission === "denied";
    }
    button.hidden = false;
    label();
    button.addEventListener("click", function () {
      if (optedIn()) {
        window.localStorage.removeItem(OPT_IN_KEY);
        label();
        return;
      }
      Notification.requestPermission().then(function (permission) {
        if (permission === "granted") window.localStorage.setItem(OPT_IN_KEY, "on");
        label();
      });
    });
  }

  function start() {
    if (!list()) return;
    readSkew();
    rememberIncidents();
    showNotifyButton();
    tick();
    window.setInterval(tick, 1000);
    document.body.addEventListener("htmx:beforeRequest", function (event) {
      if (event.detail.elt && event.detail.elt.id === "vigil-needs") knownRows = rowKeys();
    });
    document.body.addEventListener("htmx:afterSettle", function () {
      if (!list()) return;
      readSkew();
      markNewRows();
      notifyNewIncidents();
      tick();
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
