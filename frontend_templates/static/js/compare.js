// The compare page: draw the side-by-side maps, the A - B difference and the curves from the page's
// JSON (<script type="application/json" id="compare-data">), and redraw from /api/compare when a
// control changes, keeping the state in the URL (history.replaceState) so a link reopens the view.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("compare-config").textContent);
  var data = JSON.parse(document.getElementById("compare-data").textContent);
  var plotConfig = {displaylogo: false, responsive: true};
  var controls = {
    step: document.getElementById("step"), stepLabel: document.getElementById("step-label"),
    layer: document.getElementById("layer"), head: document.getElementById("head"), probe: document.getElementById("probe"),
  };

  function draw(view) {
    view.panels.forEach(function (panel, i) {
      var el = document.getElementById("panel-" + i);
      if (!el) return;
      var note = el.parentNode.querySelector(".panel-note");
      if (panel.figure) {
        Plotly.react(el, panel.figure.data, panel.figure.layout, plotConfig);
        note.textContent = "";
      } else {
        Plotly.purge(el);
        note.textContent = "#" + panel.run_id + ": " + (panel.error || "no map");
      }
    });
    var diff = document.getElementById("difference");
    var diffNote = document.getElementById("difference-note");
    if (view.difference) {
      Plotly.react(diff, view.difference.figure.data, view.difference.figure.layout, plotConfig);
      diffNote.textContent = "largest |A - B|: " + view.difference.max_abs.toFixed(3);
    } else {
      Plotly.purge(diff);
      diffNote.textContent = view.why_no_difference || "no A - B map";
    }
    view.curves.forEach(function (curve, i) {
      var el = document.getElementById("curve-" + i);
      if (el) Plotly.react(el, curve.figure.data, curve.figure.layout, plotConfig);
    });
    controls.stepLabel.textContent = String(view.step);
  }

  function state() {
    var link = document.querySelector('input[name="link"]:checked');
    var params = new URLSearchParams();
    params.set("runs", config.runs.join(","));
    if (config.steps.length) params.set("step", String(config.steps[Number(controls.step.value)]));
    params.set("link", link ? link.value : "step");
    params.set("layer", controls.layer.value);
    params.set("head", controls.head.value);
    params.set("probe", controls.probe.value);
    return params;
  }

  var pending = null;
  async function update() {
    var params = state();
    history.replaceState(null, "", window.location.pathname + "?" + params.toString());
    var mine = pending = params.toString();
    var response = await fetch(config.api + "?" + mine, {credentials: "same-origin"});
    if (mine !== pending) return;  // a newer request superseded this one
    if (!response.ok) return;
    data = await response.json();
    draw(data);
  }

  controls.step.addEventListener("input", function () {
    controls.stepLabel.textContent = String(config.steps[Number(controls.step.value)]);
    update();
  });
  [controls.layer, controls.head, controls.probe].forEach(function (el) { el.addEventListener("change", update); });
  document.querySelectorAll('input[name="link"]').forEach(function (el) { el.addEventListener("change", update); });
  draw(data);
  window.CB = window.CB || {};
  window.CB.compare = {data: function () { return data; }};
})();
