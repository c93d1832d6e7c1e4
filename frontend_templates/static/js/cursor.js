/* The step cursor, drawn on plotly figures: one step that the run page's curves and emergence matrix show.
 *
 *   CB.cursor.draw(el, step)      a curve: a vertical line at ``step``; a heatmap (the emergence matrix):
 *                                 an outline around the column nearest ``step``; null removes it
 *   CB.cursor.nearest(steps, x)   the step of ``steps`` (ascending) nearest ``x``, the earlier on a tie
 *
 * The cursor is a layout shape named "cursor", so a figure's own shapes (the peakiness plot's 0.9 bar)
 * stay; a redraw from new figure JSON (Plotly.react) drops it, and the page draws it again. Its colour is
 * the page's accent, the same as the step slider's.
 */
(function () {
  "use strict";
  const CB = (window.CB = window.CB || {});
  const NAME = "cursor";
  const COLOUR = "#2563eb";

  function nearest(steps, x) {
    let best = null;
    for (const step of steps) {
      if (best === null || Math.abs(step - x) < Math.abs(best - x)) best = step;
    }
    return best;
  }

  // The column of a heatmap holding ``step``: halfway to each neighbour, or the neighbour's gap at an end.
  function column(xs, step) {
    const at = nearest(xs, step), i = xs.indexOf(at);
    const before = i > 0 ? (at - xs[i - 1]) / 2 : null, after = i < xs.length - 1 ? (xs[i + 1] - at) / 2 : null;
    const left = before !== null ? before : after !== null ? after : 0.5;
    const right = after !== null ? after : left;
    return {type: "rect", name: NAME, xref: "x", yref: "paper", x0: at - left, x1: at + right, y0: 0, y1: 1,
            line: {color: "#ef4444", width: 2.5}, fillcolor: "rgba(0,0,0,0)", layer: "above"};
  }

  function line(step) {
    return {type: "line", name: NAME, xref: "x", yref: "paper", x0: step, x1: step, y0: 0, y1: 1,
            line: {color: COLOUR, width: 1.5}, layer: "above"};
  }

  function draw(el, step) {
    if (!el || !el.layout || !window.Plotly) return Promise.resolve();
    const others = (el.layout.shapes || []).filter((shape) => shape.name !== NAME);
    const first = (el.data || [])[0];
    let mark = null;
    if (step !== null && step !== undefined) {
      if (first && first.type === "heatmap") {
        const xs = (first.x || []).filter((x) => typeof x === "number");
        if (xs.length) mark = column(xs, step);
      } else {
        mark = line(step);
      }
    }
    return window.Plotly.relayout(el, {shapes: mark ? others.concat([mark]) : others});
  }

  CB.cursor = {draw, nearest, NAME};
})();
