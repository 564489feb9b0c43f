// kpistream console: the one script. Every page works without it; with it, times show
// in the viewer's time zone, a credential has a copy button, and a stream page follows
// new points live (server-sent events from the page's data-live address).
"use strict";
(function () {
  var format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;

  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (t) {
      var at = new Date(t.getAttribute("datetime"));
      if (isNaN(at)) return;
      t.title = t.textContent;
      t.textContent = format.format(at);
    });
    root.querySelectorAll("[data-zone]").forEach(function (z) {
      z.textContent = zone;
    });
  }

  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source || !navigator.clipboard) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(source.value || source.textContent).then(
          function () { button.textContent = "Copied"; },
          function () { source.select(); button.textContent = "Press Ctrl+C"; }
        );
      });
    });
  }

  // Fetches the page again and swaps its live region; one fetch at a time, and one
  // more if something changed meanwhile.
  function follow(address) {
    var busy = false;
    var again = false;
    function refresh() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (answer) {
          if (answer.redirected || !answer.ok) { location.reload(); return null; }
          return answer.text();
        })
        .then(function (text) {
          if (text === null) return;
          var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("[data-live-region]");
          var old = document.querySelector("[data-live-region]");
          if (fresh && old) {
            old.replaceWith(fresh);
            localTimes(fresh);
          }
        })
        .catch(function () {})
        .finally(function () {
          busy = false;
          if (again) { again = false; refresh(); }
        });
    }
    var source = new EventSource(address);
    var opened = false;
    source.addEventListener("change", refresh);
    source.addEventListener("open", function () {
      document.body.classList.add("live");
      // Opened again after a break: what changed meanwhile was not told.
      if (opened) refresh();
      opened = true;
    });
    source.addEventListener("error", function () {
      document.body.classList.remove("live");
      // Refused (the server is busy, the session ended): reload now and then instead.
      if (source.readyState === EventSource.CLOSED) setTimeout(function () { location.reload(); }, 60000);
    });
  }

  // A download link whose file is made here from the text shown, so the secret is in no
  // address the browser keeps (its download list shows a blob: address that is gone
  // with the page).
  function downloads() {
    document.querySelectorAll("a[data-download-from]").forEach(function (link) {
      var source = document.getElementById(link.getAttribute("data-download-from"));
      if (!source || !window.URL || !window.Blob) return;
      link.href = URL.createObjectURL(new Blob([source.value.trim() + "\n"], { type: "application/octet-stream" }));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    copyButtons();
    downloads();
    var address = document.body.getAttribute("data-live");
    if (address && window.EventSource) follow(address);
  });
})();
