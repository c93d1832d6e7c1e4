/* circuitboard: the intervention form (partials/intervention_fields.html), shared by the run page's
 * causal panel (causal.js) and the seed-set page's panel (population_interventions.js).
 *
 *   CB.interventionForm.spec(form)            the InterventionSpec the form says (fields it lacks are left out)
 *   CB.interventionForm.markInvalid(form, p)  outline each field a 422 names, its message in its tooltip
 *   CB.interventionForm.jobText(job)          "job 31: running, 3 / 8 results, about 12 s left"
 *   CB.interventionForm.showKindRows(form)    show only the rows of the chosen kind, now and on each change
 */
(function () {
  "use strict";
  const CB = (window.CB = window.CB || {});

  function spec(form) {
    const f = new FormData(form);
    const has = (name) => form.elements[name] !== undefined;
    const out = {kind: f.get("kind"), together: f.get("together") === "on"};
    for (const name of ["role", "metric", "site"]) if (has(name) && f.get(name)) out[name] = f.get(name);
    const list = (name) => String(f.get(name) || "").split(",").map((v) => v.trim()).filter(Boolean);
    if (list("variants").length) out.variants = list("variants");
    if (list("heads").length) out.heads = list("heads");
    const steps = String(f.get("steps") || "last").trim();
    out.steps = /^\d+$/.test(steps) ? Number(steps) : steps;
    for (const name of ["shift", "source_run", "layer", "length", "rows_per_len"]) {
      const value = String(f.get(name) || "").trim();
      if (value !== "") out[name] = Number(value);
    }
    if (out.kind !== "probe") { delete out.layer; delete out.site; }
    if (has("skip_missing")) out.skip_missing = f.get("skip_missing") === "on";
    return out;
  }

  function markInvalid(form, problems) {
    form.querySelectorAll(".invalid").forEach((el) => { el.classList.remove("invalid"); el.removeAttribute("title"); });
    for (const problem of problems) {
      const input = form.elements[problem.field];
      if (!input || !input.classList) continue;
      input.classList.add("invalid");
      input.title = problem.msg;
    }
  }

  function jobText(job) {
    const p = job.progress || {};
    let line = "job " + job.id + ": " + job.status.toLowerCase();
    if (p.total) line += ", " + p.done + " / " + p.total + " results";
    if (job.status === "RUNNING" && p.eta_s) line += ", about " + Math.ceil(p.eta_s) + " s left";
    if (job.error) line += " (" + job.error + ")";
    return line;
  }

  function showKindRows(form) {
    const show = () => form.querySelectorAll(".causal-row[data-kinds]").forEach((row) => {
      row.hidden = !row.getAttribute("data-kinds").split(" ").includes(form.elements.kind.value);
    });
    form.elements.kind.addEventListener("change", show);
    show();
  }

  CB.interventionForm = {spec, markInvalid, jobText, showKindRows};
})();
