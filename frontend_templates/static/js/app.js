/* circuitboard: the few helpers every page shares (window.CB).
 *
 *   CB.api("/runs/7")                     GET JSON under the page's api base (a share link's prefix included)
 *   CB.post("/runs/7/cancel", body)       POST JSON with the CSRF header from <meta name="csrf-token">
 *   CB.problems(body)                     a 4xx body as text: its detail, or each "field: msg" of a 422
 *   CB.renderPlots(document)              draw every partials/plot.html figure (done on load)
 *   CB.setQuery({step: 250})              keep page state in the URL without reloading
 *   export links (partials/figure_export.html)  "SVG · PNG" under a figure save it (Plotly.downloadImage)
 */
(function () {
  "use strict";
  const CB = (window.CB = window.CB || {});

  CB.pageData = function () {
    const el = document.getElementById("page-data");
    return el ? JSON.parse(el.textContent) : {};
  };

  CB.apiBase = function () {
    return CB.pageData().api_base || "/api";
  };

  CB.csrfToken = function () {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  // Every 4xx is {"detail": "sentence"}; bad input (422) is {"detail": [{"field", "msg", ...}]}.
  CB.problems = function (body, fallback) {
    const detail = body && body.detail;
    if (Array.isArray(detail)) return detail.map((e) => e.field + ": " + e.msg).join("; ");
    return typeof detail === "string" && detail ? detail : (fallback || "request failed");
  };

  async function request(method, path, body) {
    const headers = {Accept: "application/json"};
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      const token = CB.csrfToken();
      if (token) headers["X-CSRF-Token"] = token;
    }
    const response = await fetch(CB.apiBase() + path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(CB.problems(data, response.statusText));
      error.status = response.status;
      error.data = data;
      throw error;
    }
    return data;
  }
  CB.api = (path) => request("GET", path);
  CB.post = (path, body) => request("POST", path, body === undefined ? {} : body);

  CB.setQuery = function (changes) {
    const url = new URL(window.location.href);
    for (const [key, value] of Object.entries(changes)) {
      if (value === null || value === undefined || value === "") url.searchParams.delete(key);
      else url.searchParams.set(key, String(value));
    }
    window.history.replaceState(null, "", url.toString());
  };

  CB.plotConfig = {responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"]};

  CB.renderPlots = function (root) {
    if (!window.Plotly) return;
    (root || document).querySelectorAll("[data-plot]").forEach((el) => {
      const source = document.getElementById(el.dataset.plot);
      const figure = source ? JSON.parse(source.textContent) : null;
      if (figure) window.Plotly.newPlot(el, figure.data, figure.layout, CB.plotConfig);
    });
  };

  // An export link pair: <span data-export="FIGURE-ID" data-filename="NAME"> holding <a data-format="svg|png">.
  // One listener for the whole document, so links drawn later and names changed later (the attention
  // viewer's, which carry the step) just work. The image has the figure's size on screen; a PNG twice
  // its pixels, for slides.
  function saveFigure(event) {
    const link = event.target.closest && event.target.closest("[data-export] a[data-format]");
    if (!link) return;
    event.preventDefault();
    const box = link.closest("[data-export]"), el = document.getElementById(box.dataset.export);
    if (!el || !el.data || !window.Plotly) return;
    const format = link.dataset.format;
    window.Plotly.downloadImage(el, {format, filename: box.dataset.filename || box.dataset.export,
                                     width: el.offsetWidth || 700, height: el.offsetHeight || 450,
                                     scale: format === "png" ? 2 : 1});
  }

  CB.duration = function (seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
    if (seconds < 90) return Math.max(1, Math.round(seconds)) + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  };

  document.addEventListener("click", saveFigure);
  document.addEventListener("DOMContentLoaded", () => CB.renderPlots(document));
})();
