// The run page, live: each job.state / run.state event of this run recolours the job's
// graph node and table row. Without JavaScript the page reads the same, as of its load.
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root || !window.EventSource) return;
  var runId = root.dataset.run;
  var started = {};  // job id -> started_at, from its events

  function setState(element, state) {
    element.className.baseVal !== undefined
      ? element.setAttribute("class", element.getAttribute("class").replace(/\bstate-[a-z_]+/, "state-" + state))
      : (element.className = element.className.replace(/\bstate-[a-z_]+/, "state-" + state));
  }

  function seconds(from, to) {
    var s = Math.max(0, to - from);
    if (s < 60) return s.toFixed(1) + "s";
    var m = Math.floor(s / 60), r = Math.floor(s % 60);
    return m + "m" + (r < 10 ? "0" : "") + r + "s";
  }

  function onJob(event) {
    var jobId = event.job_id, state = event.state, data = event.data || {};
    document.querySelectorAll("#graph .node").forEach(function (node) {
      if (node.dataset.job !== jobId) return;
      setState(node, state);
      node.querySelector(".node-state").textContent = state;
      if (data.started_at) started[jobId] = data.started_at;
      if (data.finished_at && started[jobId]) {
        node.querySelector(".node-time").textContent = seconds(started[jobId], data.finished_at);
      }
      var title = node.querySelector("title");
      if (title) title.textContent = jobId + ": " + state;
    });
    document.querySelectorAll("#jobs tr[data-job]").forEach(function (row) {
      if (row.dataset.job !== jobId) return;
      var label = row.querySelector(".state");
      setState(label, state);
      label.textContent = state;
      if (data.detail) row.querySelector(".why").textContent = data.detail;
      if (state === "cached") row.querySelector(".cache").textContent = "hit";
    });
  }

  // A job's states only move on: pending, waiting, running, then one that ends it.
  function rank(state) {
    var order = { pending: 0, waiting: 1, running: 2 };
    return state in order ? order[state] : 3;
  }

  function shownState(jobId) {
    var found = "pending";
    document.querySelectorAll("#jobs tr[data-job]").forEach(function (row) {
      if (row.dataset.job === jobId) found = row.querySelector(".state").textContent;
    });
    return found;
  }

  function onRun(event) {
    var label = document.getElementById("run-state");
    setState(label, event.state);
    label.textContent = event.state;
  }

  var source = new EventSource("/api/v1/events?topic=run:" + encodeURIComponent(runId));
  var replay = null;  // events seen while a refresh is in flight: applied again after it
  source.addEventListener("job.state", function (m) {
    var event = JSON.parse(m.data);
    if (replay) replay.push(event);
    onJob(event);
  });
  source.addEventListener("run.state", function (m) { onRun(JSON.parse(m.data)); });
  // What changed between this page's render and the stream's start, and the final
  // timings once the run ends: the page is read again and its run section swapped in
  // (server-rendered and escaped, as on the first load).
  function refresh() {
    var seen = replay = replay || [];
    fetch(location.pathname, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        var fresh = html && new DOMParser().parseFromString(html, "text/html").getElementById("run");
        if (fresh) {
          root.innerHTML = fresh.innerHTML;
          seen.forEach(function (event) {  // newer than the page read, perhaps
            if (rank(event.state) > rank(shownState(event.job_id))) onJob(event);
          });
        }
      })
      .finally(function () { if (replay === seen) replay = null; });
  }
  source.addEventListener("open", refresh);
  source.addEventListener("run.state", function (m) {
    if (JSON.parse(m.data).state !== "running") refresh();
  });
})();
