// Live parts of a page: one EventSource on the page's topic; on an event of a kind the
// page cares about, the page's <main> is fetched again and swapped in (the page stays
// readable without this script). <div data-live-topic="..." data-live-kinds="a b c">
(function () {
  var body = document.body;
  var marker = document.querySelector("[data-live-topic]");
  if (!marker || !window.EventSource) { return; }
  var topic = marker.getAttribute("data-live-topic");
  var kinds = (marker.getAttribute("data-live-kinds") || "").split(" ").filter(Boolean);
  var pending = null;
  function refresh() {
    pending = null;
    var url = marker.getAttribute("data-live-url") || window.location.href;
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.querySelector("main");
        var main = document.querySelector("main");
        if (fresh && main) { main.innerHTML = fresh.innerHTML; }
        body.setAttribute("data-live-updates",
          String(Number(body.getAttribute("data-live-updates") || "0") + 1));
      });
  }
  var source = new EventSource("/api/v1/events?topic=" + encodeURIComponent(topic));
  kinds.forEach(function (kind) {
    source.addEventListener(kind, function () {
      if (!pending) { pending = setTimeout(refresh, 300); }
    });
  });
  source.onopen = function () { body.setAttribute("data-live", "connected"); };
})();
