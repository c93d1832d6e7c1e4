/* circuitboard: the seed-set page's "Interventions on every seed" (partials/population_interventions.html).
 *
 * Reads GET {api}/seed-sets/{id}/interventions: its series (one per intervention and target), each
 * with a members figure built by the server (x: the targeted head's peaky_thres, y: intervened and
 * baseline accuracy, one point per seed), one distribution figure over every series, and the
 * population's jobs. The chosen series is drawn with its members' table and its spread; the form
 * (intervention_form.js) posts to POST {api}/sweeps/{id}/interventions, then the panel polls every
 * 3 s, showing the jobs' progress, until none is queued or running.
 */
(function () {
  "use strict";
  const panel = document.getElementById("population-interventions");
  if (!panel) return;
  const CB = window.CB;
  const form = CB.interventionForm;
  const base = panel.dataset.api;
  const readUrl = base + "/seed-sets/" + panel.dataset.sweep + "/interventions";
  const postUrl = base + "/sweeps/" + panel.dataset.sweep + "/interventions";
  let data = null;

  const fixed = (v, digits) => (v === null || v === undefined ? "" : v.toFixed(digits === undefined ? 2 : digits));

  function cell(row, value, className) {
    const td = document.createElement("td");
    if (value instanceof Node) td.appendChild(value); else td.textContent = value;
    if (className) td.className = className;
    row.appendChild(td);
  }

  function headText(h) {
    return h && h.label ? h.label + " " + fixed(h.peaky_thres) : "";
  }

  function drawTable(series) {
    const body = document.querySelector("#iv-members tbody");
    body.replaceChildren(...series.points.map((p) => {
      const row = document.createElement("tr");
      row.dataset.run = p.run_id;
      const link = document.createElement("a");
      link.href = p.url;
      link.textContent = "#" + p.run_id;
      cell(row, p.seed === null ? p.member : String(p.seed));
      cell(row, link);
      cell(row, String(p.step));
      cell(row, p.target);
      cell(row, fixed(p.x.peaky_thres));
      cell(row, fixed(p.x.peaky_abs));
      cell(row, headText(p.circuit.eoi_locator));
      cell(row, headText(p.circuit.iteration));
      cell(row, fixed(p.baseline, 3));
      cell(row, fixed(p.accuracy, 3), p.accuracy !== null && p.baseline !== null && p.baseline - p.accuracy > 0.5 ? "broken" : "");
      cell(row, fixed(p.drop, 3));
      return row;
    }));
  }

  function summaryText(series) {
    const a = series.accuracy, split = series.by_sharpness;
    if (!a.n) return "no member has a result";
    let line = "intervened accuracy over " + a.n + " seeds: mean " + fixed(a.mean) + " ± " + fixed(a.std) +
      " (median " + fixed(a.median) + ", min-max " + fixed(a.min) + "-" + fixed(a.max) + "); baseline mean " +
      fixed(series.baseline.mean) + ". Head at or above " + split.bar + ": ";
    line += split.sharp.n ? split.sharp.n + " seeds, mean " + fixed(split.sharp.mean) : "none";
    line += "; below: " + (split.soft.n ? split.soft.n + " seeds, mean " + fixed(split.soft.mean) : "none") + ".";
    if (series.missing.length) line += " Not tested: " + series.missing.join(", ") + ".";
    return line;
  }

  function draw() {
    const select = document.getElementById("iv-series");
    const series = data.series[Number(select.value)];
    if (!series) return;
    document.getElementById("iv-summary").textContent = summaryText(series);
    drawTable(series);
    if (!window.Plotly) return;
    window.Plotly.react(document.getElementById("fig-iv-members"), series.figure.data, series.figure.layout, CB.plotConfig);
    const distribution = data.figures["fig-iv-distribution"];
    window.Plotly.react(document.getElementById("fig-iv-distribution"), distribution.data, distribution.layout, CB.plotConfig);
  }

  function fill() {
    document.getElementById("iv-empty").hidden = data.series.length > 0;
    document.getElementById("iv-results").hidden = data.series.length === 0;
    const select = document.getElementById("iv-series");
    const kept = select.value;
    select.replaceChildren(...data.series.map((s, i) => {
      const option = document.createElement("option");
      option.value = String(i);
      option.textContent = s.title;
      return option;
    }));
    if (kept && Number(kept) < data.series.length) select.value = kept;
    draw();
    document.getElementById("iv-jobs").textContent = jobsText(data.jobs);
  }

  function jobsText(jobs) {
    const live = jobs.filter((j) => j.live);
    if (!live.length) return "";
    const done = live.reduce((sum, j) => sum + ((j.progress || {}).done || 0), 0);
    const total = live.reduce((sum, j) => sum + ((j.progress || {}).total || 0), 0);
    return live.length + " member job" + (live.length > 1 ? "s" : "") + " queued or running" +
      (total ? ", " + done + " / " + total + " results" : "") + ": " + live.slice(0, 4).map(form.jobText).join("; ");
  }

  async function load() {
    const response = await fetch(readUrl, {headers: {Accept: "application/json"}, credentials: "same-origin"});
    if (!response.ok) return null;
    data = await response.json();
    fill();
    return data;
  }

  async function poll() {
    for (let i = 0; i < 1200; i++) {
      const now = await load();
      if (now && !now.live) return;
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  }

  async function launch(event) {
    event.preventDefault();
    const status = document.getElementById("iv-status");
    status.textContent = "queueing...";
    const response = await fetch(postUrl, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": CB.csrfToken()},
      body: JSON.stringify(form.spec(event.target)),
    });
    const body = await response.json().catch(() => ({}));
    form.markInvalid(event.target, Array.isArray(body.detail) && !response.ok ? body.detail : []);
    if (!response.ok) {
      status.textContent = "refused: " + CB.problems(body, response.statusText);
      return;
    }
    const skipped = body.skipped.length ? "; skipped " + body.skipped.length + ": " + body.skipped.map((s) => s.member).join(", ") : "";
    status.textContent = body.jobs.length + " jobs queued, one per member" + skipped + "; results appear here as they run";
    poll();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("iv-series").addEventListener("change", draw);
    const element = document.getElementById("population-form");
    if (element) {
      form.showKindRows(element);
      element.addEventListener("submit", launch);
    }
    poll();  // a request queued elsewhere (the CLI, another tab) is followed too
  });
})();
