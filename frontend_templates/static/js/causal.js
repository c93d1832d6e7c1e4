/* circuitboard: the run page's causal panel (partials/causal_panel.html).
 *
 * Reads GET {api}/runs/{id}/interventions and draws, with plotly (loaded by the page):
 *   - an overview bar chart: each (intervention, target)'s accuracy at its latest step beside the
 *     untouched baseline, the target heads' peaky_thres in the hover (causal next to correlational);
 *   - the chosen result in detail: accuracy per length (bars), a curve over steps when several
 *     steps were tested, the layer x position grid of activation patching, a probe's accuracy vs chance.
 * The form (its fields and helpers: intervention_form.js) posts an InterventionSpec to the same URL
 * with the X-CSRF-Token header from
 * <meta name="csrf-token">, then polls, showing the job's status and progress ("3 / 8 results"),
 * until the job ends.
 */
(function () {
  "use strict";
  const panel = document.getElementById("causal");
  if (!panel) return;
  const url = panel.dataset.api + "/runs/" + panel.dataset.run + "/interventions";
  const config = {responsive: true, displaylogo: false};
  const form = window.CB.interventionForm;  // intervention_form.js: the spec, refusals, job lines
  let data = null;

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function text(el, value) {
    el.textContent = value;
  }

  function seriesName(s) {
    return s.intervention + " @ " + s.target;
  }

  function peakyText(map) {
    return Object.entries(map || {}).map(([head, v]) => head + " peaky_thres " + (v === null ? "n/a" : v.toFixed(2))).join(", ");
  }

  function drawVerdict() {
    const box = document.getElementById("causal-verdict");
    box.replaceChildren();
    for (const line of data.verdict.lines) {
      const p = document.createElement("p");
      text(p, line.text);
      box.appendChild(p);
    }
  }

  // A bar of accuracy 0.00 is the key result, not missing data: draw it at a small visible floor,
  // print every value above its bar, and hover the true value (customdata).
  const BAR_FLOOR = 0.015;
  function accuracyBars(name, x, values, color, extra) {
    return Object.assign({type: "bar", name: name, x: x, customdata: values,
      y: values.map((v) => (v == null ? null : Math.max(v, BAR_FLOOR))),
      text: values.map((v) => (v == null ? "" : v.toFixed(2))), textposition: "outside", cliponaxis: false,
      marker: {color: color, line: {color: "#1e1b4b", width: 1}},
      hovertemplate: "%{x}<br>" + name + " accuracy %{customdata:.3f}<extra></extra>"}, extra || {});
  }

  function drawOverview() {
    const evals = data.series.filter((s) => s.points);
    const el = document.getElementById("causal-overview");
    if (!window.Plotly || !evals.length) { el.replaceChildren(); return; }
    const names = evals.map(seriesName);
    const last = evals.map((s) => s.points[s.points.length - 1]);
    window.Plotly.react(el, [
      accuracyBars("baseline", names, last.map((p) => p.baseline), "#cbd5e1"),
      accuracyBars("intervened", names, last.map((p) => p.mean), "#4f46e5", {hovertext: last.map((p) => peakyText(p.peaky_thres)),
        hovertemplate: "%{x}<br>intervened accuracy %{customdata:.3f}<br>%{hovertext}<extra></extra>"}),
    ], {title: {text: "accuracy (L = 4..max) at the latest step tested"}, barmode: "group", yaxis: {range: [0, 1.15]},
        margin: {b: 140}, height: 380}, config);
  }

  function drawDetail() {
    const select = document.getElementById("causal-series");
    const s = data.series[Number(select.value)];
    const el = document.getElementById("causal-detail");
    if (!window.Plotly || !s) { el.replaceChildren(); return; }
    if (s.points && s.points.length > 1) {
      const steps = s.points.map((p) => p.step);
      window.Plotly.react(el, [
        {x: steps, y: s.points.map((p) => p.baseline), name: "baseline", mode: "lines+markers"},
        {x: steps, y: s.points.map((p) => p.mean), name: "intervened", mode: "lines+markers"},
      ], {title: {text: seriesName(s) + " over training"}, xaxis: {title: {text: "step"}}, yaxis: {range: [0, 1.05]}, height: 380}, config);
    } else if (s.points) {
      const p = s.points[0];
      const lengths = Object.keys(p.by_length).sort((a, b) => a - b);
      window.Plotly.react(el, [
        accuracyBars("baseline", lengths, lengths.map((n) => p.baseline_by_length[n]), "#cbd5e1"),
        accuracyBars("intervened", lengths, lengths.map((n) => p.by_length[n]), "#4f46e5"),
      ], {title: {text: seriesName(s) + " by length (step " + p.step + "; " + peakyText(p.peaky_thres) + ")"},
          xaxis: {title: {text: "input length L"}}, yaxis: {range: [0, 1.15]}, barmode: "group", height: 380}, config);
    } else if (s.latest.grid) {
      const r = s.latest;
      window.Plotly.react(el, [{type: "heatmap", z: r.grid, x: r.positions, y: r.layers.map((l) => "layer " + l),
                                colorscale: "Viridis"}],
        {title: {text: seriesName(s) + " (clean " + r.clean.toFixed(2) + ", corrupted " + r.corrupted.toFixed(2) + ")"},
         xaxis: {title: {text: "position"}}, height: 380}, config);
    } else {
      const r = s.latest;
      window.Plotly.react(el, [{type: "bar", x: ["probe", "chance"], y: [r.accuracy, r.chance]}],
        {title: {text: seriesName(s) + " held-out accuracy (step " + r.step + ")"}, yaxis: {range: [0, 1.05]}, height: 380}, config);
    }
  }

  function fill() {
    document.getElementById("causal-empty").hidden = data.series.length > 0;
    const select = document.getElementById("causal-series");
    const kept = select.value;
    select.replaceChildren(...data.series.map((s, i) => {
      const option = document.createElement("option");
      option.value = String(i);
      text(option, seriesName(s));
      return option;
    }));
    if (kept && Number(kept) < data.series.length) select.value = kept;
    drawVerdict();
    drawOverview();
    drawDetail();
  }

  async function load() {
    const response = await fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"});
    if (!response.ok) return null;
    data = await response.json();
    fill();
    return data;
  }

  async function launch(event) {
    event.preventDefault();
    const status = document.getElementById("causal-status");
    text(status, "queueing...");
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken()},
      body: JSON.stringify(form.spec(event.target)),
    });
    const body = await response.json().catch(() => ({}));
    form.markInvalid(event.target, Array.isArray(body.detail) && !response.ok ? body.detail : []);
    if (!response.ok) {
      text(status, "refused: " + window.CB.problems(body, response.statusText));
      return;
    }
    text(status, "job " + body.job_id + " queued; results appear here as it runs");
    for (let i = 0; i < 720; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5000));
      const now = await load();
      const job = now && (now.jobs || []).find((j) => j.id === body.job_id);
      if (!job) continue;
      text(status, form.jobText(job));
      if (!["QUEUED", "RUNNING"].includes(job.status)) return;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("causal-series").addEventListener("change", drawDetail);
    const element = document.getElementById("causal-form");
    if (element) {  // each kind's own fields on their own row; the rows of other kinds hide
      form.showKindRows(element);
      element.addEventListener("submit", launch);
    }
    load();
  });
})();
