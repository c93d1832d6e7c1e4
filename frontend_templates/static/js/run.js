/* The run page, live: progress and curves follow the worker without a reload, and the attention
 * viewer moves through the stored snapshots (step slider, length and sequence selectors, head choice).
 *
 * One step cursor for the whole page (``moveCursor``): the step slider, a vertical line on every curve
 * and an outlined column of the emergence matrix show the same snapshot step (static/js/cursor.js
 * draws them); moving the slider, clicking a point of a curve (the nearest snapshot step) or a cell of
 * the matrix moves all of them and loads that step's attention maps. The export links under each
 * figure save it as SVG or PNG (CB.bindExports); the GIF link asks the server for the chosen head over
 * training (GET /api/runs/{id}/attention.gif).
 *
 * State (step, probe, length, layer, head, score) is kept in the URL with history.replaceState, so a
 * copied link reopens the same view. While the run is not finished the page polls GET /api/runs/{id}
 * every POLL_MS: the curves are redrawn (GET .../figures) when new snapshot steps appear, and at most
 * every FIGURE_MS while the step moves (the loss is recorded about once a second); the summary
 * section is re-read from the page when the verdict so far changes (an evaluation). The ETA comes
 * from the steps done over the last RATE_WINDOW_MS of polls, not the worker's instant rate, so an
 * evaluation pause does not make it jump; past the last step it says "final evaluation".
 */
(function () {
  "use strict";
  const CB = window.CB;
  const POLL_MS = 1500;
  const FIGURE_MS = 5000;
  const RATE_WINDOW_MS = 60000;
  const page = CB.pageData();
  const runId = page.run.id;
  const state = Object.assign({}, page.state);
  let steps = page.run.snapshot_steps.slice();
  let snapshot = page.snapshot;
  let terminal = page.run.terminal;
  let shownVerdict = page.run.verdict || null;  // the summary's verdict on the page: a new one re-reads the section
  let figuresAt = 0, figuresStep = null;  // when the curves were last redrawn, and at which step
  const seen = [];  // [time ms, step] of recent polls, for the ETA's rate
  const $ = (id) => document.getElementById(id);
  const CURVES = ["fig-loss", "fig-peaky", "fig-acc-test", "fig-acc-train"];
  const MATRICES = ["fig-emergence-eoi_locator", "fig-emergence-iteration"];

  // ------------------------------------------------------------- the step cursor

  function moveCursor(step) {
    // Every view of the step follows: the slider, its label, the URL, the curves and matrices, the maps.
    if (step === null || step === undefined) return Promise.resolve();
    state.step = step;
    setSlider();
    $("step-label").textContent = step.toLocaleString("en");
    CB.setQuery({step});
    drawCursor();
    return loadSnapshot();
  }

  function drawCursor() {
    return Promise.all(CURVES.concat(MATRICES).map((id) => CB.cursor.draw($(id), state.step)));
  }

  function bindCurves() {
    CURVES.forEach((id) => {
      const el = $(id);
      if (!el || !el.on) return;
      el.on("plotly_click", (event) => {
        const x = event.points && event.points[0] && event.points[0].x;
        if (typeof x === "number" && steps.length) moveCursor(CB.cursor.nearest(steps, x));
      });
    });
  }

  // ------------------------------------------------------------- attention viewer

  let pending = 0;
  async function loadSnapshot() {
    if (state.step === null || state.step === undefined) return;
    const ticket = ++pending;  // the latest request wins; older answers are dropped
    const data = await CB.api("/runs/" + runId + "/snapshots/" + state.step + "?probe=" + state.probe);
    if (ticket !== pending) return;
    if (!snapshot && state.length === null) {  // the first snapshot of a live run: open a readable length
      const lengths = data.lengths, wanted = Math.min(Math.max(...lengths), 8);
      const probe = lengths.indexOf(wanted);
      if (probe > 0 && probe !== state.probe) {
        state.probe = probe;
        state.length = wanted;
        return loadSnapshot();
      }
    }
    snapshot = data;
    state.length = data.length;
    drawViewer();
    CB.setQuery({step: state.step, probe: state.probe, length: state.length, layer: state.layer, head: state.head});
  }

  function drawViewer() {
    if (!snapshot) return;
    $("viewer").hidden = false;
    $("no-snapshots").hidden = true;
    const overlay = $("overlay").checked;
    state.layer = Math.min(state.layer, snapshot.n_layers - 1);
    state.head = Math.min(state.head, snapshot.n_heads - 1);
    $("step-label").textContent = snapshot.step.toLocaleString("en");
    $("probe-text").textContent = snapshot.labels.join(" ");
    fillProbeSelectors();
    CB.attention.grid($("attention-grid"), snapshot, {overlay, selected: {layer: state.layer, head: state.head},
                                                     onSelect: selectHead});
    CB.attention.render($("attention-focus"), snapshot, {layer: state.layer, head: state.head, overlay});
    $("attention-focus").dataset.step = String(snapshot.step);
    nameExports();
  }

  function nameExports() {
    // The saved files say what they show: run, head, probe and step.
    const at = "run" + runId + "-step" + snapshot.step + "-probe" + snapshot.probe;
    $("export-focus").dataset.filename = at + "-L" + state.layer + "H" + state.head;
    $("export-grid").dataset.filename = at + "-all-heads";
    const gif = $("attention-gif");
    gif.href = CB.apiBase() + "/runs/" + runId + "/attention.gif?layer=" + state.layer + "&head=" + state.head +
      "&probe=" + snapshot.probe;
    gif.download = "run" + runId + "-L" + state.layer + "H" + state.head + "-probe" + snapshot.probe + ".gif";
    $("attention-gif-head").textContent = "L" + state.layer + "H" + state.head;
  }

  function selectHead(layer, head) {
    state.layer = layer;
    state.head = head;
    drawViewer();
    CB.setQuery({layer, head});
  }

  function fillProbeSelectors() {
    const lengths = [...new Set(snapshot.lengths)].sort((a, b) => a - b);
    const lengthSelect = $("length"), probeSelect = $("probe");
    lengthSelect.replaceChildren(...lengths.map((n) => new Option("L = " + n, n, false, n === snapshot.length)));
    const same = snapshot.lengths.map((n, i) => [n, i]).filter(([n]) => n === snapshot.length).map(([, i]) => i);
    probeSelect.replaceChildren(...same.map((i, k) => new Option((k + 1) + " of " + same.length, i, false, i === snapshot.probe)));
  }

  function setSlider() {
    const slider = $("step-slider");
    slider.max = String(Math.max(steps.length - 1, 0));
    const index = steps.indexOf(state.step);
    slider.value = String(index < 0 ? steps.length - 1 : index);
  }

  function bindViewer() {
    $("step-slider").addEventListener("input", (event) => moveCursor(steps[parseInt(event.target.value, 10)]));
    $("length").addEventListener("change", (event) => {
      const wanted = parseInt(event.target.value, 10);
      state.probe = snapshot.lengths.indexOf(wanted);
      loadSnapshot();
    });
    $("probe").addEventListener("change", (event) => {
      state.probe = parseInt(event.target.value, 10);
      loadSnapshot();
    });
    $("overlay").addEventListener("change", drawViewer);
  }

  // ------------------------------------------------------------- emergence matrix and figures

  function bindEmergence() {
    MATRICES.forEach((id) => {
      const el = $(id);
      if (!el || !el.on) return;
      el.on("plotly_click", (event) => {
        const point = event.points[0];
        const match = /^L(\d+)H(\d+)$/.exec(point.y);
        if (!match || steps.indexOf(point.x) < 0) return;
        state.layer = parseInt(match[1], 10);
        state.head = parseInt(match[2], 10);
        moveCursor(point.x).then(() => $("attention").scrollIntoView({behavior: "smooth"}));
      });
    });
    $("score").addEventListener("change", (event) => {
      state.score = event.target.value;
      CB.setQuery({score: state.score});
      MATRICES.forEach((id) => {  // the saved matrix's file names its score
        const box = document.querySelector('[data-export="' + id + '"]');
        if (box) box.dataset.filename = box.dataset.filename.replace(/-[a-z_]+$/, "-" + state.score);
      });
      refreshFigures();
    });
  }

  async function refreshFigures() {
    const figs = (await CB.api("/runs/" + runId + "/figures?score=" + state.score)).figures;
    for (const [id, figure] of Object.entries(figs)) {
      const el = $(id);
      if (el) await window.Plotly.react(el, figure.data, figure.layout, CB.plotConfig);
    }
    await drawCursor();  // new figure JSON has no cursor
  }

  // ------------------------------------------------------------- live status

  function showStatus(run) {
    const status = document.querySelector('[data-live="status"]');
    status.textContent = run.status;
    status.className = "status status-" + run.status.toLowerCase();
    document.querySelector('[data-live="bar"]').style.width = (100 * run.progress.fraction).toFixed(1) + "%";
    document.querySelector('[data-live="progress-text"]').textContent =
      "step " + run.progress.step.toLocaleString("en") + " / " + run.progress.total.toLocaleString("en");
    const p = run.progress, bits = [];
    const rate = steadyRate(p);
    if (rate) bits.push(rate.toFixed(1) + " steps/s");
    if (run.status === "RUNNING" && p.total && p.step >= p.total) bits.push("final evaluation");
    else if (run.status === "RUNNING" && rate) bits.push("ETA " + roughDuration((p.total - p.step) / rate));
    if (p.loss !== null && p.loss !== undefined) bits.push("loss " + p.loss.toFixed(3));
    if (p.test_seq_acc !== null && p.test_seq_acc !== undefined) bits.push("test acc " + p.test_seq_acc.toFixed(2));
    document.querySelector('[data-live="eta"]').textContent = bits.join(" · ");
    const error = document.querySelector('[data-live="error"]');
    error.textContent = run.error || "";
    error.hidden = !run.error;
    if (run.summary && run.summary.verdict) document.querySelector('[data-live="verdict"]').textContent = run.summary.verdict;
    const stall = document.querySelector('[data-live="stall"]'), note = stallNote(run);
    stall.textContent = note || "";
    stall.hidden = !note;
    const cancel = $("cancel"), retry = $("retry");
    if (cancel) cancel.hidden = run.terminal;
    if (retry) retry.hidden = !(run.status === "FAILED" || run.status === "CANCELLED");
  }

  function steadyRate(p) {
    // Steps per second over the last RATE_WINDOW_MS of polls; the worker's own figure until a window fills.
    const now = Date.now();
    if (!seen.length || seen[seen.length - 1][1] !== p.step) seen.push([now, p.step]);
    while (seen.length > 2 && now - seen[1][0] > RATE_WINDOW_MS) seen.shift();
    const [t0, s0] = seen[0], [t1, s1] = seen[seen.length - 1];
    if (t1 - t0 >= 10000 && s1 > s0) return (s1 - s0) / ((now - t0) / 1000);
    return p.steps_per_s || null;
  }

  function roughDuration(seconds) {
    // "about N min" from two minutes to an hour and a half (a steadier read than seconds); CB.duration otherwise.
    return seconds >= 120 && seconds < 5400 ? "about " + Math.round(seconds / 60) + " min" : CB.duration(seconds);
  }

  function stallNote(run) {
    // The sentence of server.views.runs.stall_note, for the live page: keep the two in step.
    const silent = run.progress.silent_s;
    if (run.status !== "RUNNING" || silent === null || silent === undefined || silent < page.stall_note_after_s) return null;
    const note = "no progress for " + Math.floor(silent / 60) + " min";
    const limit = page.stall_seconds;
    if (!limit) return note + "; the worker never kills a silent training process (CIRCUITBOARD_STALL_SECONDS=0)";
    const shown = limit >= 60 ? String(Number((limit / 60).toPrecision(3))) + " min" : limit.toFixed(0) + " s";
    return note + "; the worker kills and resumes a training process silent for " + shown + " (CIRCUITBOARD_STALL_SECONDS)";
  }

  async function poll() {
    try {
      const run = await CB.api("/runs/" + runId);
      showStatus(run);
      const wasTerminal = terminal;
      terminal = run.terminal;
      const grew = run.snapshot_steps.length !== steps.length;
      const newest = steps[steps.length - 1];
      steps = run.snapshot_steps;
      if (grew) {
        const following = !snapshot || state.step === null || state.step === undefined || state.step === newest;
        setSlider();
        if (following && steps.length) await moveCursor(steps[steps.length - 1]);  // follow the newest snapshot
      }
      const moved = run.progress.step !== figuresStep && Date.now() - figuresAt >= FIGURE_MS;
      if (grew || moved || (terminal && !wasTerminal)) {
        figuresAt = Date.now();
        figuresStep = run.progress.step;
        await refreshFigures();
      }
      const verdict = (run.summary && run.summary.verdict) || null;
      if (terminal && !wasTerminal) await refreshSections(["summary", "details"]);
      else if (verdict !== shownVerdict) await refreshSections(["summary"]);
      shownVerdict = verdict;
      document.body.dataset.runStatus = run.status;
    } catch (error) {
      console.warn("poll failed:", error.message);
    }
    if (!terminal) window.setTimeout(poll, POLL_MS);
  }

  async function refreshSections(ids) {
    // The summary (so far, then final), lineage and downloads: take them from the page itself.
    const response = await fetch(window.location.href, {credentials: "same-origin"});
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    ids.forEach((id) => {
      const mine = $(id), theirs = fresh.getElementById(id);
      if (mine && theirs) mine.replaceChildren(...[...theirs.childNodes].map((node) => document.importNode(node, true)));
    });
  }

  // ------------------------------------------------------------- cancel and retry

  function bindActions() {
    ["cancel", "retry"].forEach((action) => {
      const button = $(action);
      if (!button) return;
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          await CB.post("/runs/" + runId + "/" + action);
          const restart = terminal;
          terminal = false;
          if (restart || action === "retry") poll();
        } catch (error) {
          alert(action + " failed: " + error.message);
        } finally {
          button.disabled = false;
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    bindViewer();
    bindEmergence();
    bindCurves();
    bindActions();
    if (snapshot) {
      setSlider();
      drawViewer();
      drawCursor();
      // ?step=18 opens the nearest snapshot (20): the URL says the step shown
      if (new URL(window.location.href).searchParams.has("step")) CB.setQuery({step: state.step});
    }
    document.body.dataset.runStatus = page.run.status;
    if (!terminal) window.setTimeout(poll, POLL_MS);
  });
})();
