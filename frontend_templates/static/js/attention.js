/* The attention viewer, reusable (the run page and the Compare page draw with it).
 *
 *   CB.attention.render(el, snapshot, {layer, head, overlay, minus})   one head, large, with hover
 *   CB.attention.grid(el, snapshot, {overlay, selected, onSelect})      every layer x head, small multiples
 *
 * ``snapshot`` is the JSON of GET /api/runs/{id}/snapshots/{step}?probe=i: ``attention[layer][head]``
 * is a ragged lower triangle (query q holds keys 0..q), ``labels`` names each position, ``expected``
 * lists the theory's (query, key) cells per role and the layer they belong to. With ``minus`` (another
 * snapshot of the same probe sequence) ``render`` draws the signed difference A - B.
 * Mirrors server/figures.py attention_figure: same colours, same overlay.
 */
(function () {
  "use strict";
  const CB = (window.CB = window.CB || {});
  const OVERLAY = {eoi_locator: "#dc2626", iteration: "#f59e0b"};
  const SCALE = [[0, "#f7fbff"], [0.15, "#c6dbef"], [0.5, "#4292c6"], [1, "#08306b"]];  // figures.ATTENTION_SCALE

  function square(rows) {
    const n = rows.length;
    return rows.map((row) => row.concat(new Array(n - row.length).fill(null)));
  }

  function difference(a, b) {
    return a.map((row, q) => row.map((v, k) => (v === null || b[q] === undefined || b[q][k] === null ? null : v - b[q][k])));
  }

  function escapeText(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  }

  function overlayTraces(snapshot, layer, xaxis, yaxis, showlegend) {
    return snapshot.expected.filter((e) => e.layer === layer && e.cells.length).map((e) => ({
      type: "scatter", mode: "markers", name: "expected: " + escapeText(e.title), showlegend,
      x: e.cells.map((c) => c[1]), y: e.cells.map((c) => c[0]), xaxis, yaxis, hoverinfo: "skip",
      marker: {symbol: "square-open", size: showlegend ? 11 : 5, color: OVERLAY[e.role], line: {width: showlegend ? 2 : 1}},
    }));
  }

  // The large map's overlay: a thin outline inside each expected cell (never wider than the cell, so
  // the attention under it stays visible), and one legend-only trace per role to name the colour.
  const INSET = 0.08;
  function cellOutline(q, k, color, width) {
    return {type: "rect", xref: "x", yref: "y", x0: k - 0.5 + INSET, x1: k + 0.5 - INSET, y0: q - 0.5 + INSET,
            y1: q + 0.5 - INSET, line: {color, width}, fillcolor: "rgba(0,0,0,0)", layer: "above"};
  }

  function overlayShapes(snapshot, layer) {
    return snapshot.expected.filter((e) => e.layer === layer && e.cells.length).flatMap(
      (e) => e.cells.map((c) => Object.assign(cellOutline(c[0], c[1], OVERLAY[e.role], 1.5), {name: "expected:" + e.role})));
  }

  function overlayLegend(snapshot, layer) {
    return snapshot.expected.filter((e) => e.layer === layer && e.cells.length).map((e) => ({
      type: "scatter", mode: "markers", name: "expected: " + escapeText(e.title), x: [null], y: [null],
      hoverinfo: "skip", marker: {symbol: "square-open", size: 10, color: OVERLAY[e.role], line: {width: 1.5}},
    }));
  }

  function heatmap(snapshot, layer, head, opts) {
    let z = square(snapshot.attention[layer][head]);
    const diff = opts.minus ? true : false;
    if (diff) z = difference(z, square(opts.minus.attention[layer][head]));
    const labels = snapshot.labels.map(escapeText);
    const positions = labels.map((_, i) => i);
    const text = positions.map((q) => positions.map((k) => "query " + q + " " + labels[q] + "<br>key " + k + " " + labels[k]));
    return {
      type: "heatmap", z, x: positions, y: positions, text, hoverongaps: false,
      hovertemplate: "%{text}<br>" + (diff ? "A - B " : "weight ") + "%{z:.3f}<extra></extra>",
      colorscale: diff ? "RdBu" : SCALE, reversescale: diff, zmin: diff ? -1 : 0, zmax: 1, zmid: diff ? 0 : undefined,
    };
  }

  // Every label up to 16 positions; beyond, every second (or third ...) so they do not collide.
  function axis(snapshot, title) {
    const stride = Math.ceil(snapshot.labels.length / 16);
    const vals = snapshot.labels.map((_, i) => i).filter((i) => i % stride === 0);
    return {tickmode: "array", tickvals: vals, ticktext: vals.map((i) => escapeText(snapshot.labels[i])),
            tickfont: {size: 10}, title: {text: title}, zeroline: false, showgrid: false};
  }

  function render(el, snapshot, opts) {
    const o = Object.assign({layer: 0, head: 0, overlay: true}, opts || {});
    const n = snapshot.labels.length;
    const data = [Object.assign(heatmap(snapshot, o.layer, o.head, o), {colorbar: {thickness: 10}})];
    const shapes = o.overlay ? overlayShapes(snapshot, o.layer) : [];
    if (o.overlay) data.push(...overlayLegend(snapshot, o.layer));
    const title = (o.title || "L" + o.layer + "H" + o.head) + " at step " + snapshot.step.toLocaleString("en");
    const layout = {
      title: {text: escapeText(title), font: {size: 14}}, height: 560, margin: {l: 55, r: 20, t: 40, b: 45},
      font: {family: "system-ui, -apple-system, 'Segoe UI', sans-serif", size: 12}, hovermode: "closest",
      xaxis: Object.assign(axis(snapshot, "key"), {tickangle: -60, range: [-0.5, n - 0.5], constrain: "domain"}),
      yaxis: Object.assign(axis(snapshot, "query"), {range: [n - 0.5, -0.5], scaleanchor: "x", constrain: "domain"}),
      showlegend: true, legend: {orientation: "h", y: -0.18}, shapes,
    };
    return window.Plotly.react(el, data, layout, CB.plotConfig);
  }

  function grid(el, snapshot, opts) {
    const o = Object.assign({overlay: true}, opts || {});
    const L = snapshot.n_layers, H = snapshot.n_heads;
    const data = [], annotations = [], layout = {
      grid: {rows: L, columns: H, pattern: "independent", xgap: 0.08, ygap: 0.12},
      height: 130 * L + 40, margin: {l: 10, r: 10, t: 25, b: 10}, showlegend: false,
      font: {size: 10}, hovermode: "closest",
    };
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const i = l * H + h + 1, xa = "x" + (i === 1 ? "" : i), ya = "y" + (i === 1 ? "" : i);
        data.push(Object.assign(heatmap(snapshot, l, h, o), {xaxis: xa, yaxis: ya, showscale: false,
                                                              hovertemplate: "L" + l + "H" + h + "<br>%{text}<br>%{z:.3f}<extra></extra>"}));
        if (o.overlay) data.push(...overlayTraces(snapshot, l, xa, ya, false));
        const selected = o.selected && o.selected.layer === l && o.selected.head === h;
        layout["xaxis" + (i === 1 ? "" : i)] = {showticklabels: false, ticks: "", zeroline: false, showgrid: false};
        layout["yaxis" + (i === 1 ? "" : i)] = {showticklabels: false, ticks: "", autorange: "reversed", zeroline: false, showgrid: false};
        annotations.push({text: (selected ? "<b>" : "") + "L" + l + "H" + h + (selected ? "</b>" : ""),
                          xref: xa + " domain", yref: ya + " domain", x: 0.5, y: 1.12, showarrow: false,
                          font: {size: 11, color: selected ? "#2563eb" : "#1d2330"}});
      }
    }
    layout.annotations = annotations;
    const drawn = window.Plotly.react(el, data, layout, {displayModeBar: false, responsive: true});
    return drawn.then((gd) => {
      if (o.onSelect && !el.dataset.bound) {
        el.dataset.bound = "1";
        el.on("plotly_click", (event) => {
          const point = event.points[0];
          const index = parseInt((point.data.xaxis || "x").slice(1) || "1", 10) - 1;
          el._cbSelect(Math.floor(index / H), index % H);
        });
      }
      el._cbSelect = (layer, head) => o.onSelect && o.onSelect(layer, head);
      return gd;
    });
  }

  CB.attention = {render, grid, square, difference};
})();
