// Sextant's pages need little script: live charts for running runs and copy buttons.
// Served from /static/app.js (Content-Security-Policy: script-src 'self'); no inline code.
(function () {
  "use strict";

  var POLL_MS = 5000;
  var LIVE = { running: true, queued: true, lost: true };

  // #charts[data-live=true][data-src]: re-fetch the charts fragment and swap it in,
  // until the run's status (X-Run-Status) says it has ended.
  function keepLive(container) {
    var src = container.getAttribute("data-src");
    function tick() {
      if (container.getAttribute("data-live") !== "true" || document.hidden) {
        if (container.getAttribute("data-live") === "true") setTimeout(tick, POLL_MS);
        return;
      }
      fetch(src, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok || response.redirected) throw new Error("charts: " + response.status);
          var status = response.headers.get("X-Run-Status");
          return response.text().then(function (html) {
            container.innerHTML = html;
            if (status) {
              var shown = document.getElementById("run-status");
              if (shown) {
                shown.textContent = status;
                shown.setAttribute("data-status", status);
              }
              if (!LIVE[status]) container.setAttribute("data-live", "false");
            }
          });
        })
        .catch(function () { /* try again at the next tick */ })
        .then(function () {
          if (container.getAttribute("data-live") === "true") setTimeout(tick, POLL_MS);
        });
    }
    setTimeout(tick, POLL_MS);
  }

  // button[data-copy=SELECTOR]: copies the element's value or text.
  function copyButton(button) {
    button.addEventListener("click", function () {
      var target = document.querySelector(button.getAttribute("data-copy"));
      if (!target) return;
      var text = "value" in target ? target.value : target.textContent;
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () {});
      } else if (target.select) {
        target.select();
        if (document.execCommand("copy")) done();
      }
    });
  }

  function start() {
    document.querySelectorAll('#charts[data-src]').forEach(keepLive);
    document.querySelectorAll("button[data-copy]").forEach(copyButton);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
