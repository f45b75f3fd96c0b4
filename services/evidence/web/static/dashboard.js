// Draws each chart from the JSON configuration beside its canvas (charts.py builds it). The
// same figures are in the table under the chart: without this script nothing is missing.
"use strict";
(function () {
  if (typeof Chart === "undefined") { return; }
  var palette = ["#0b5cad", "#d1731f", "#2a8a4a", "#8a3ea8", "#b02a37", "#5b6672", "#1f9aa8", "#a88a1f"];
  document.querySelectorAll("script.chart-config").forEach(function (node) {
    var spec = JSON.parse(node.textContent);
    var canvas = document.getElementById(node.dataset.canvas);
    if (!canvas) { return; }
    var line = spec.type === "line";
    spec.data.datasets.forEach(function (dataset, i) {
      var colour = palette[i % palette.length];
      dataset.backgroundColor = colour;
      dataset.borderColor = colour;
      if (line) { dataset.spanGaps = false; dataset.tension = 0; dataset.pointRadius = 4; }
    });
    var horizontal = Boolean(spec.options.horizontal);
    var stacked = Boolean(spec.options.stacked);
    var valueAxis = { stacked: stacked, beginAtZero: !line, title: { display: Boolean(spec.options.yTitle), text: spec.options.yTitle || "" } };
    var labelAxis = { stacked: stacked };
    new Chart(canvas, {
      type: spec.type,
      data: spec.data,
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: horizontal ? "y" : "x",
        scales: horizontal ? { x: valueAxis, y: labelAxis } : { x: labelAxis, y: valueAxis },
        plugins: { legend: { position: "bottom" } }
      }
    });
  });
})();
