/* The run page, live: progress and curves follow the worker without a reload, and the attention
 * viewer moves through the stored snapshots (step slider, length and sequence selectors, head choice).
 *
 * State (step, probe, length, layer, head, score) is kept in the URL with history.replaceState, so a
 * copied link reopens the same view. While the run is not finished the page polls GET /api/runs/{id}
 * every POLL_MS; when new snapshot steps appear it redraws the curves (GET .../figures) and extends
 * the slider.
 */
(function () {
  "use strict";
  const CB = window.CB;
  const POLL_MS = 1500;
  const page = CB.pageData();
  const runId = page.run.id;
  const state = Object.assign({}, page.state);
  let steps = page.run.snapshot_steps.slice();
  let snapshot = page.snapshot;
  let terminal = page.run.terminal;
  let shownFigureSteps = steps.length;
  const $ = (id) => document.getElementById(id);

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
    $("step-slider").addEventListener("input", (event) => {
      state.step = steps[parseInt(event.target.value, 10)];
      $("step-label").textContent = state.step.toLocaleString("en");
      loadSnapshot();
    });
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
    ["fig-emergence-eoi_locator", "fig-emergence-iteration"].forEach((id) => {
      const el = $(id);
      if (!el || !el.on) return;
      el.on("plotly_click", (event) => {
        const point = event.points[0];
        const match = /^L(\d+)H(\d+)$/.exec(point.y);
        if (!match || steps.indexOf(point.x) < 0) return;
        state.layer = parseInt(match[1], 10);
        state.head = parseInt(match[2], 10);
        state.step = point.x;
        setSlider();
        loadSnapshot().then(() => $("attention").scrollIntoView({behavior: "smooth"}));
      });
    });
    $("score").addEventListener("change", (event) => {
      state.score = event.target.value;
      CB.setQuery({score: state.score});
      refreshFigures();
    });
  }

  async function refreshFigures() {
    const figs = (await CB.api("/runs/" + runId + "/figures?score=" + state.score)).figures;
    for (const [id, figure] of Object.entries(figs)) {
      const el = $(id);
      if (el) await window.Plotly.react(el, figure.data, figure.layout, CB.plotConfig);
    }
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
    if (p.steps_per_s) bits.push(p.steps_per_s.toFixed(1) + " steps/s");
    if (p.eta_s !== null && p.eta_s !== undefined && run.status === "RUNNING") bits.push("ETA " + CB.duration(p.eta_s));
    if (p.loss !== null && p.loss !== undefined) bits.push("loss " + p.loss.toFixed(3));
    if (p.test_seq_acc !== null && p.test_seq_acc !== undefined) bits.push("test acc " + p.test_seq_acc.toFixed(2));
    document.querySelector('[data-live="eta"]').textContent = bits.join(" · ");
    const error = document.querySelector('[data-live="error"]');
    error.textContent = run.error || "";
    error.hidden = !run.error;
    if (run.summary && run.summary.verdict) document.querySelector('[data-live="verdict"]').textContent = run.summary.verdict;
    const cancel = $("cancel"), retry = $("retry");
    if (cancel) cancel.hidden = run.terminal;
    if (retry) retry.hidden = !(run.status === "FAILED" || run.status === "CANCELLED");
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
        if (following && steps.length) state.step = steps[steps.length - 1];  // follow the newest snapshot
        setSlider();
        if (following) await loadSnapshot();
      }
      if (grew || (terminal && !wasTerminal)) await refreshFigures();
      if (terminal && !wasTerminal) await refreshSections();
      document.body.dataset.runStatus = run.status;
    } catch (error) {
      console.warn("poll failed:", error.message);
    }
    if (!terminal) window.setTimeout(poll, POLL_MS);
  }

  async function refreshSections() {
    // The summary, lineage and downloads are written when the run ends: take them from the page itself.
    const response = await fetch(window.location.href, {credentials: "same-origin"});
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    ["summary", "details"].forEach((id) => {
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
    bindActions();
    if (snapshot) {
      setSlider();
      drawViewer();
    }
    document.body.dataset.runStatus = page.run.status;
    if (!terminal) window.setTimeout(poll, POLL_MS);
  });
})();
