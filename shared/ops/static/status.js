// Status page behaviour: keep the function key from the page's own URL, select windows, replay after confirmation.
// The key lives only in this page (from ?code= or typed by the operator); it is sent only with a replay request.
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var keyInput = document.getElementById("fkey");
  var code = params.get("code") || "";
  if (code && keyInput) keyInput.value = code;

  // Links and the filter form keep ?code= (so navigating stays authorised) and ?refresh=0.
  var carried = [["code", code], ["refresh", params.get("refresh") === "0" ? "0" : ""]].filter(function (kv) { return kv[1]; });
  function keep(href) {
    var url = new URL(href, window.location.href);
    carried.forEach(function (kv) { url.searchParams.set(kv[0], kv[1]); });
    return url.pathname + url.search;
  }
  document.querySelectorAll("a.keep").forEach(function (a) { a.setAttribute("href", keep(a.getAttribute("href"))); });
  var filter = document.getElementById("filter");
  carried.forEach(function (kv) {
    if (!filter) return;
    var hidden = document.createElement("input");
    hidden.type = "hidden"; hidden.name = kv[0]; hidden.value = kv[1];
    filter.appendChild(hidden);
  });

  // Selection: click a window cell, a day row or a table row; shift-click extends the range.
  function mark(section, lo, hi) {
    section.querySelectorAll("[data-start]").forEach(function (el) {
      var inside = el.dataset.start >= lo && el.dataset.end <= hi;
      el.classList.toggle("sel", inside);
    });
  }
  document.querySelectorAll("section.pipeline").forEach(function (section) {
    var form = section.querySelector("form.replay");
    var anchor = null;
    section.addEventListener("click", function (ev) {
      if (!form || ev.target.closest("a, input, button.replay-btn, form")) return;
      var el = ev.target.closest("[data-start]");
      if (!el) return;
      var lo = el.dataset.start, hi = el.dataset.end;
      if (ev.shiftKey && anchor) {
        lo = anchor.start < lo ? anchor.start : lo;
        hi = anchor.end > hi ? anchor.end : hi;
      } else {
        anchor = { start: lo, end: hi };
      }
      form.elements.start.value = lo;
      form.elements.end.value = hi;
      mark(section, lo, hi);
    });
  });

  // Replay: confirmation first, then POST /api/replay with the key in x-functions-key.
  var dialog = document.getElementById("confirm");
  var pending = null;
  function show(form, ok, text) {
    var out = form.querySelector("output");
    out.dataset.ok = ok ? "true" : "false";
    out.textContent = text;
  }
  function describe(status, text) {
    var body;
    try { body = JSON.parse(text); } catch (e) { return status + " " + text.slice(0, 300); }
    if (body.error) return status + " refused: " + body.error;
    var outcomes = (body.results || []).map(function (r) { return r.outcome; });
    var done = outcomes.filter(function (o) { return o === "done"; }).length;
    var parts = [status + " " + body.mode + ": " + body.windows + " window(s) from " + body.first + " to " + body.last_end];
    if (outcomes.length) parts.push(done + " done, " + (outcomes.length - done) + " not done");
    if (body.queued) parts.push(body.queued + " queued for the next ticks");
    return parts.join("; ");
  }
  function send(req) {
    var headers = { "Content-Type": "application/json" };
    var key = keyInput ? keyInput.value.trim() : "";
    if (key) headers["x-functions-key"] = key;
    show(req.form, true, "sending…");
    fetch(new URL("replay", window.location.href).pathname, {
      method: "POST", headers: headers, cache: "no-store", credentials: "same-origin",
      body: JSON.stringify({ pipeline: req.pipeline, start: req.start, end: req.end })
    }).then(function (resp) {
      return resp.text().then(function (text) { show(req.form, resp.ok, describe(resp.status, text)); });
    }).catch(function (err) { show(req.form, false, "request failed: " + err); });
  }
  document.querySelectorAll("form.replay").forEach(function (form) {
    form.addEventListener("submit", function (ev) { ev.preventDefault(); });
    form.querySelector("button.replay-btn").addEventListener("click", function () {
      var start = form.elements.start.value.trim(), end = form.elements.end.value.trim();
      if (!start || !end) { show(form, false, "select a window (shift-click for a range) or type from and to"); return; }
      pending = { form: form, pipeline: form.dataset.pipeline, start: start, end: end };
      document.getElementById("confirm-text").textContent =
        "Replay pipeline " + pending.pipeline + " from " + start + " to " + end +
        "? Its windows are moved again and their outputs rewritten.";
      dialog.returnValue = "";
      dialog.showModal();
    });
  });
  if (dialog) {
    dialog.addEventListener("close", function () {
      var req = pending;
      pending = null;
      if (req && dialog.returnValue === "confirm") send(req);
      else if (req) show(req.form, false, "cancelled: nothing was sent");
    });
  }

  // Refresh every minute unless the operator is busy (a selection, the dialog, a field in use).
  var auto = document.getElementById("autorefresh");
  if (auto && params.get("refresh") === "0") auto.checked = false;
  window.setInterval(function () {
    if (!auto || !auto.checked || (dialog && dialog.open)) return;
    var active = document.activeElement;
    if (document.querySelector(".sel") || (active && active.tagName === "INPUT" && active.type !== "checkbox")) return;
    window.location.replace(keep(window.location.href));
  }, 60000);
})();
