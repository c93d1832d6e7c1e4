// The sweep page: draw the heatmaps from the page's JSON (<script type="application/json" id="sweep-data">),
// open a cell's run on click, move through training with the step slider and pick the score (both kept
// in the URL: ?step=2000&score=peaky_abs), and refresh the heatmaps AND the cells' table from the JSON
// twin every few seconds while cells still train (no reload needed to see a cell finish).
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("sweep-config").textContent);
  var data = JSON.parse(document.getElementById("sweep-data").textContent);
  var plotConfig = {displaylogo: false, responsive: true};
  var REFRESH_MS = 5000;
  var slider = document.getElementById("sweep-step");
  var label = document.getElementById("sweep-step-label");
  var scoreSelect = document.getElementById("sweep-score");
  var pending = 0;  // the latest request wins: a slow answer for an old position is dropped

  function fmt(value) { return value === null || value === undefined ? "" : value.toFixed(3); }

  function cellRow(cell) {
    var tr = document.createElement("tr");
    var run = cell.run;
    var link = document.createElement("td");
    if (run) {
      var a = document.createElement("a");
      a.href = run.url;
      a.textContent = "#" + run.id + (run.name ? " " + run.name : "");
      link.appendChild(a);
    } else {
      link.innerHTML = '<span class="muted">not queued yet</span>';
    }
    var status = document.createElement("td");
    if (run) {
      var badge = document.createElement("span");
      badge.className = "status status-" + run.status.toLowerCase();
      badge.textContent = run.status.toLowerCase();
      status.appendChild(badge);
    }
    var cells = [cell.label, null, null, fmt(cell.test_seq_acc), fmt(cell.eoi_locator), fmt(cell.iteration)];
    cells.forEach(function (text, i) {
      if (i === 1) { tr.appendChild(link); return; }
      if (i === 2) { tr.appendChild(status); return; }
      var td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    });
    return tr;
  }

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
    var body = document.getElementById("sweep-cells-body");
    var rows = document.createDocumentFragment();
    view.cells.forEach(function (cell) { rows.appendChild(cellRow(cell)); });
    body.replaceChildren(rows);
    document.querySelectorAll(".score-name").forEach(function (el) { el.textContent = view.score; });
    document.getElementById("cells-when").textContent = view.step === null ? "final" : "at step " + view.step.toLocaleString("en");
    slider.max = String(view.steps.length);
    label.textContent = view.step === null ? "final" : "step " + view.step.toLocaleString("en");
  }

  function chosen() {  // {step, score} of the controls; step null at the slider's right end (final)
    var position = Number(slider.value);
    return {step: position >= data.steps.length ? null : data.steps[position], score: scoreSelect.value};
  }

  async function load(state) {
    var ticket = ++pending;
    var query = new URLSearchParams();
    if (state.step !== null) query.set("step", String(state.step));
    query.set("score", state.score);
    var response = await fetch(config.api + "?" + query.toString(), {credentials: "same-origin"});
    if (!response.ok || ticket !== pending) return;
    data = await response.json();
    draw(data);
  }

  function change() {
    var state = chosen();
    label.textContent = state.step === null ? "final" : "step " + state.step.toLocaleString("en");
    CB.setQuery({step: state.step, score: state.score === "peaky_thres" ? null : state.score});
    load(state);
  }

  async function refresh() {
    try {
      if (data.finished < data.total) await load(chosen());
    } finally {
      if (data.finished < data.total) setTimeout(refresh, REFRESH_MS);
    }
  }

  slider.addEventListener("input", change);
  scoreSelect.addEventListener("change", change);
  document.getElementById("sweep-view").addEventListener("submit", function (event) { event.preventDefault(); change(); });
  draw(data);
  if (data.finished < data.total) setTimeout(refresh, REFRESH_MS);
})();
