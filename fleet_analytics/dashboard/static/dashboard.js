// The dashboard's only script: draws the charts described by the JSON next to each canvas, and
// makes "tick all" boxes work. No inline scripts (the pages' Content-Security-Policy forbids them).
(function () {
  "use strict";
  var colours = {
    sent: "#2456c8", received: "#12a37f", low: "#5b8def", medium: "#d9a400", high: "#e0691a",
    critical: "#c8102e", quarantined: "#c8102e"
  };
  var palette = ["#2456c8", "#12a37f", "#c8102e", "#d9a400", "#7a4cc2"];

  function humanBytes(value) {
    var units = ["B", "kB", "MB", "GB", "TB", "PB"];
    var v = Math.abs(value), i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return (value < 0 ? "-" : "") + (i ? v.toFixed(v < 10 ? 1 : 0) : v) + " " + units[i];
  }

  function timeLabel(epoch, span) {
    var d = new Date(epoch * 1000), iso = d.toISOString();
    return span > 2 * 86400 ? iso.slice(5, 10) + " " + iso.slice(11, 16) : iso.slice(11, 16);
  }

  function draw(canvas) {
    var source = document.getElementById(canvas.getAttribute("data-chart"));
    if (!source || typeof Chart === "undefined") { return; }
    var spec = JSON.parse(source.textContent);
    var labels = spec.labels;
    var span = spec.range ? spec.range[1] - spec.range[0] : (labels.length > 1 ? labels[labels.length - 1] - labels[0] : 0);
    // a line over time is drawn on a linear time axis (gaps in the data stay gaps); bars by category
    var timeAxis = spec.kind === "line" && !spec.categorical;
    var datasets = spec.datasets.map(function (set, index) {
      var colour = set.colour || colours[set.label] || colours[set.label.split(" ")[0]] || palette[index % palette.length];
      var data = timeAxis ? set.data.map(function (y, i) { return { x: labels[i], y: y }; }) : set.data;
      var out = {
        label: set.label, data: data, borderColor: colour, backgroundColor: colour,
        borderWidth: spec.kind === "line" ? 1.5 : 0, pointRadius: set.points ? 4 : (labels.length < 60 ? 2 : 0),
        spanGaps: !set.points, showLine: !set.points, fill: false
      };
      if (spec.threshold !== undefined && spec.categorical) {
        out.backgroundColor = labels.map(function (x) { return x > spec.threshold ? colours.critical : colour; });
      }
      return out;
    });
    var yTicks = spec.unit === "bytes" ? { callback: function (v) { return humanBytes(v); } } : {};
    new Chart(canvas, {
      type: spec.kind,
      data: {
        labels: timeAxis ? undefined : (spec.categorical ? labels : labels.map(function (x) { return timeLabel(x, span); })),
        datasets: datasets
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: timeAxis
            ? { type: "linear", min: spec.range ? spec.range[0] : undefined, max: spec.range ? spec.range[1] : undefined,
                ticks: { maxTicksLimit: 10, callback: function (v) { return timeLabel(v, span); } } }
            : { stacked: !!spec.stacked, ticks: { maxTicksLimit: 12, autoSkip: true } },
          y: { stacked: !!spec.stacked, type: spec.logarithmic ? "logarithmic" : "linear", beginAtZero: !spec.logarithmic, ticks: yTicks }
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: {
            title: function (items) { return timeAxis && items.length ? new Date(items[0].parsed.x * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC" : undefined; },
            label: spec.unit === "bytes" ? function (c) { return c.dataset.label + ": " + humanBytes(c.parsed.y); } : undefined
          } }
        }
      }
    });
    canvas.setAttribute("data-drawn", "true");
  }

  function ready() {
    Array.prototype.forEach.call(document.querySelectorAll("canvas[data-chart]"), draw);
    Array.prototype.forEach.call(document.querySelectorAll("input[data-check-all]"), function (box) {
      box.addEventListener("change", function () {
        var name = box.getAttribute("data-check-all");
        Array.prototype.forEach.call(box.form.querySelectorAll("input[name='" + name + "']"), function (other) {
          other.checked = box.checked;
        });
      });
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", ready); } else { ready(); }
}());
