// The sweep page: draw the heatmaps from the page's JSON (<script type="application/json" id="sweep-data">),
// open a cell's run on click, and refresh from the JSON twin every few seconds while cells still train.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("sweep-config").textContent);
  var data = JSON.parse(document.getElementById("sweep-data").textContent);
  var plotConfig = {displaylogo: false, responsive: true};
  var REFRESH_MS = 5000;

  function draw(view) {
    view.figures.forEach(function (entry, i) {
      var el = document.getElementById("grid-" + i);
      if (!el) return;
      Plotly.react(el, entry.figure.data, entry.figure.layout, plotConfig);
      if (!el.dataset.linked) {
        el.dataset.linked = "1";
        el.on("plotly_click", function (event) {
          var point = event.points && event.points[0];
          if (!point) return;
          var index = point.pointNumber;  // a heatmap's point is [row, column]
          var url = Array.isArray(index) && data.links[index[0]] ? data.links[index[0]][index[1]] : null;
          if (url) window.location.assign(url);
        });
      }
    });
    document.getElementById("sweep-progress").textContent = view.done + " / " + view.total + " done";
  }

  async function refresh() {
    if (data.done >= data.total) return;
    try {
      var response = await fetch(config.api, {credentials: "same-origin"});
      if (response.ok) { data = await response.json(); draw(data); }
    } finally {
      if (data.done < data.total) setTimeout(refresh, REFRESH_MS);
    }
  }

  draw(data);
  setTimeout(refresh, REFRESH_MS);
})();
