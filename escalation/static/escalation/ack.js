// The acknowledge link page (/ack/): the link's key is the URL fragment, which browsers never
// send to a server. Read it, take it out of the address bar and the history entry, and post it
// in the form's body; the answer is the confirmation page.
(function () {
  "use strict";
  var form = document.getElementById("ack-open");
  if (!form) {
    return;
  }
  var key = window.location.hash.replace(/^#/, "");
  try {
    key = decodeURIComponent(key);
  } catch (error) {
    // Not percent-encoded after all: post it as it is, the server says whether it is valid.
  }
  if (!key) {
    document.getElementById("ack-missing").hidden = false;
    return;
  }
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  form.elements.token.value = key;
  form.submit();
})();
