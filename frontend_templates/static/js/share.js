// The "share" button: make a read-only link of the current view (its URL query is the state) and show it.
// Markup: partials/share_button.html. Sends the CSRF token from <meta name="csrf-token"> or data-csrf.
(function () {
  "use strict";
  if (window.CB && window.CB.shareInstalled) return;
  window.CB = window.CB || {};
  window.CB.shareInstalled = true;

  function csrfToken(el) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && meta.content) return meta.content;
    var box = el.closest("[data-csrf]");
    return box ? box.getAttribute("data-csrf") : "";
  }

  function viewState() {
    var params = new URLSearchParams(window.location.search);
    params.delete("runs");  // a compare link names its runs itself
    return params.toString();
  }

  function request(button) {
    var kind = button.getAttribute("data-share-kind");
    var runIds = (button.getAttribute("data-run-ids") || "").split(",").filter(Boolean).map(Number);
    var sweepId = button.getAttribute("data-sweep-id");
    var body = {state: viewState()};
    if (kind === "run") return {url: "/api/runs/" + runIds[0] + "/shares", body: body};
    body.kind = kind;
    if (kind === "sweep") body.sweep_id = Number(sweepId); else body.run_ids = runIds;
    return {url: "/api/shares", body: body};
  }

  async function share(button) {
    var box = button.closest(".share-box");
    var out = box.querySelector(".share-result");
    var input = out.querySelector("input");
    var call = request(button);
    button.disabled = true;
    try {
      var response = await fetch(call.url, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrfToken(button)},
        body: JSON.stringify(call.body),
      });
      var data = await response.json();
      if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : "could not make a link");
      input.value = window.location.origin + data.url;
      input.size = Math.max(20, input.value.length);  // the whole URL, not its tail
      out.hidden = false;
      input.focus();
      input.select();
    } catch (error) {
      input.value = "error: " + error.message;
      out.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  async function copy(button) {
    var input = button.closest(".share-result").querySelector("input");
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (error) {  // no clipboard API (plain http on another host): select and copy the old way
      input.select();
      document.execCommand("copy");
    }
    button.textContent = "Copied";
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-share-kind]");
    if (button) share(button);
    var copyButton = event.target.closest("button.share-copy");
    if (copyButton) copy(copyButton);
  });
})();
