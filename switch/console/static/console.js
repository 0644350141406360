/* Ponte console: live overview over Server-Sent Events, drawn with uPlot.
   No inline script anywhere (the Content-Security-Policy forbids it): this file finds its
   elements by id and does nothing on pages that do not have them. */
(function () {
  "use strict";

  function pct(x) { return (x * 100).toFixed(1) + " %"; }
  function two(n) { return (n < 10 ? "0" : "") + n; }
  // The console's one date format, as the server writes it (pages.format_utc):
  // "2023-11-14 22:13:20.123 UTC". ns arrive as JSON numbers: milliseconds are exact enough.
  function utc(ns) {
    var d = new Date(Math.floor(ns / 1e6));
    var ms = String(d.getUTCMilliseconds()).padStart(3, "0");
    return d.getUTCFullYear() + "-" + two(d.getUTCMonth() + 1) + "-" + two(d.getUTCDate()) +
      " " + two(d.getUTCHours()) + ":" + two(d.getUTCMinutes()) + ":" +
      two(d.getUTCSeconds()) + "." + ms + " UTC";
  }
  function text(id, value) { var el = document.getElementById(id); if (el) { el.textContent = value; } }

  function renderAlerts(alerts) {
    var list = document.getElementById("alerts");
    if (!list) { return; }
    var items = alerts.map(function (a) {
      var li = document.createElement("li");
      li.className = "alert alert-" + a.severity;
      var badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = a.severity;
      li.appendChild(badge);
      li.appendChild(document.createTextNode(" " + a.text));
      return li;
    });
    if (!items.length) {
      var none = document.createElement("li");
      none.className = "alert-none";
      none.textContent = "No alerts.";
      items.push(none);
    }
    // Only touch the list when it changed, so screen readers do not re-announce it.
    var html = items.map(function (li) { return li.outerHTML; }).join("");
    if (list.innerHTML !== html) { list.replaceChildren.apply(list, items); }
  }

  function renderOutcomes(outcomes) {
    var body = document.getElementById("outcomes");
    if (!body) { return; }
    var rows = Object.keys(outcomes).map(function (name) {
      var tr = document.createElement("tr");
      var a = document.createElement("td"); a.textContent = name;
      var b = document.createElement("td"); b.className = "num"; b.textContent = outcomes[name];
      tr.appendChild(a); tr.appendChild(b);
      return tr;
    });
    if (rows.length) { body.replaceChildren.apply(body, rows); }
  }

  function makeChart(el) {
    if (typeof uPlot === "undefined") { return null; }
    var opts = {
      width: Math.max(320, el.clientWidth - 16), height: 240,
      scales: { x: { time: true } },
      // Axis times in UTC, like every time on the console.
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      // The legend writes times like the rest of the console; the axis only their time of
      // day, to the second (its date is the page's).
      series: [{ label: "Time", value: function (u, ts) { return ts == null ? "--" : utc(ts * 1e9); } },
               { label: "transfers/s", stroke: "#0b5394", width: 2, fill: "rgba(11,83,148,0.08)" }],
      axes: [{ values: function (u, splits) {
                 return splits.map(function (ts) { return utc(ts * 1e9).slice(11, 19); });
               },
               // Whole seconds and wider apart: a label is eight characters.
               incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600],
               space: 80, size: 40 },
             { label: "transfers/s" }],
    };
    var chart = new uPlot(opts, [[], []], el);
    window.addEventListener("resize", function () {
      chart.setSize({ width: Math.max(320, el.clientWidth - 16), height: 240 });
    });
    return chart;
  }

  function startLive() {
    var live = document.getElementById("live");
    if (!live || typeof EventSource === "undefined") { return; }
    var chartEl = document.getElementById("tps-chart");
    var chart = chartEl ? makeChart(chartEl) : null;
    var xs = [], ys = [];
    var source = new EventSource(live.getAttribute("data-live-source"));
    source.addEventListener("open", function () { text("live-state", "connected"); });
    source.addEventListener("error", function () { text("live-state", "reconnecting…"); });
    source.addEventListener("overview", function (event) {
      var o = JSON.parse(event.data);
      text("kpi-tps", o.transfers_per_s.toFixed(1));
      text("kpi-success", pct(o.success_rate));
      text("kpi-p50", o.latency_p50_ms.toFixed(2) + " ms");
      text("kpi-p99", o.latency_p99_ms.toFixed(2) + " ms");
      text("kpi-inflight", String(o.in_flight));
      text("kpi-total", String(o.transfers_total));
      text("live-at", "· updated " + utc(o.at_ns));
      renderAlerts(o.alerts);
      renderOutcomes(o.outcomes);
      if (o.series_full) { xs = []; ys = []; }
      o.series.forEach(function (point) {
        if (!xs.length || point[0] > xs[xs.length - 1]) { xs.push(point[0]); ys.push(point[1]); }
      });
      while (xs.length > 300) { xs.shift(); ys.shift(); }
      if (chart) { chart.setData([xs, ys]); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startLive);
  } else {
    startLive();
  }
})();
