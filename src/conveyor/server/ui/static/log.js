// The log page: "load earlier" fetches the rendered range before what is shown and puts it
// on top; while the job runs, new lines arrive on the page's one event stream
// (topic log:<run>:<job>) and are appended, their ANSI colours rendered as server/ui/ansi.py
// does. Text only ever goes in through textContent.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log) return;
  var base = log.dataset.base;
  var start = Number(log.dataset.start), end = Number(log.dataset.end);
  var encoder = new TextEncoder(), decoder = new TextDecoder();
  var partial = "";

  var earlier = document.getElementById("earlier");
  if (earlier && window.fetch) {
    earlier.addEventListener("click", function (e) {
      e.preventDefault();
      var from = Math.max(0, start - 65536);
      fetch(base + "/range?offset=" + from + "&length=" + (start - from), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (got) {
          // The server rendered and escaped this HTML (server/ui/ansi.py).
          log.insertAdjacentHTML("afterbegin", got.html);
          start = got.start;
          if (start <= 0) earlier.remove();
          extent();
        });
    });
  }

  function extent() {
    var label = document.getElementById("log-extent");
    if (label) label.textContent = "bytes " + start + "–" + end;
  }

  var PALETTE_CLASSES = 16;
  function sgr(style, params) {
    var codes = params === "" ? [0] : params.split(/[;:]/).map(function (p) { return Number(p) || 0; });
    for (var i = 0; i < codes.length; i++) {
      var c = codes[i];
      if (c === 0) style = {};
      else if (c >= 1 && c <= 4) style[["bold", "dim", "italic", "underline"][c - 1]] = true;
      else if (c === 22) { style.bold = false; style.dim = false; }
      else if (c === 23) style.italic = false;
      else if (c === 24) style.underline = false;
      else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) style.fg = c < 90 ? c - 30 : c - 82;
      else if ((c >= 40 && c <= 47) || (c >= 100 && c <= 107)) style.bg = c < 100 ? c - 40 : c - 92;
      else if (c === 39) style.fg = undefined;
      else if (c === 49) style.bg = undefined;
      else if ((c === 38 || c === 48) && codes[i + 1] === 5 && codes[i + 2] < PALETTE_CLASSES) {
        style[c === 38 ? "fg" : "bg"] = codes[i + 2]; i += 2;
      } else if (c === 38 || c === 48) break;  // 256/24-bit colours live: shown plain
    }
    return style;
  }

  function line(text, stderr, elapsed) {
    var row = document.createElement("span");
    row.className = stderr ? "ln err" : "ln";
    if (elapsed !== null) {
      var t = document.createElement("span");
      t.className = "t";
      t.textContent = elapsed;
      row.appendChild(t);
      row.appendChild(document.createTextNode(" "));
    }
    var pattern = /\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?/g;
    var style = {}, at = 0, m;
    function piece(s) {
      s = s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "");
      if (!s) return;
      var classes = [];
      ["bold", "dim", "italic", "underline"].forEach(function (k) { if (style[k]) classes.push("ansi-" + k); });
      if (style.fg !== undefined) classes.push("ansi-fg-" + style.fg);
      if (style.bg !== undefined) classes.push("ansi-bg-" + style.bg);
      if (!classes.length) { row.appendChild(document.createTextNode(s)); return; }
      var span = document.createElement("span");
      span.className = classes.join(" ");
      span.textContent = s;
      row.appendChild(span);
    }
    while ((m = pattern.exec(text)) !== null) {
      piece(text.slice(at, m.index));
      at = pattern.lastIndex;
      if (m[2] === "m") style = sgr(Object.assign({}, style), m[1]);
    }
    piece(text.slice(at));
    row.appendChild(document.createTextNode("\n"));
    return row;
  }

  function append(offset, text) {
    var bytes = encoder.encode(text);
    if (offset + bytes.length <= end) return;  // shown already
    if (offset < end) text = decoder.decode(bytes.slice(end - offset));
    end = Math.max(end, offset + bytes.length);
    var follow = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    var records = (partial + text).split("\n");
    partial = records.pop();
    var fragment = document.createDocumentFragment();
    records.forEach(function (raw) {
      var parts = raw.split("\t");
      if (parts.length >= 3) fragment.appendChild(line(parts.slice(2).join("\t"), parts[1] === "stderr", parts[0]));
      else fragment.appendChild(line(raw, false, null));
    });
    log.appendChild(fragment);
    extent();
    if (follow) window.scrollTo(0, document.body.scrollHeight);
  }

  var topic = log.dataset.topic;
  if (topic && window.EventSource) {
    var source = new EventSource("/api/v1/events?topic=" + encodeURIComponent(topic));
    source.addEventListener("log", function (m) {
      var chunk = JSON.parse(m.data);
      append(chunk.offset, chunk.text);
    });
    // Lines written between this page's render and the stream's start (when another
    // viewer's reader was already past them): fetched once, on connecting.
    source.addEventListener("open", function () {
      fetch(base + "/range?offset=" + end + "&length=1048576", { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (got) {
          if (got.start !== end || got.end <= end) return;
          log.insertAdjacentHTML("beforeend", got.html);  // rendered and escaped by the server
          end = got.end;
          extent();
        });
    });
    source.addEventListener("log.end", function () {
      source.close();
      var state = document.getElementById("job-state");
      if (state) state.textContent = "finished";
    });
  }
})();
