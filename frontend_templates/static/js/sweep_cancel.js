// The sweep page's cancel button (partials/sweep_cancel.html). The first click asks again on the
// button itself (no dialog); a second click within a few seconds sends one POST
// /api/sweeps/{id}/cancel, which ends the queued cells, flags the running ones and stops the cells
// not queued yet; the page then reloads to show every cell's status.
(function () {
  "use strict";
  var box = document.getElementById("sweep-cancel");
  var button = document.getElementById("sweep-cancel-button");
  if (!box || !button) return;
  var message = document.getElementById("sweep-cancel-message");
  var LABEL = button.textContent, CONFIRM_MS = 5000;
  var armed = null;

  async function cancel() {
    button.disabled = true;
    message.textContent = "cancelling…";
    try {
      var answer = await CB.post("/sweeps/" + box.dataset.sweep + "/cancel");
      var stopping = answer.cells.filter(function (cell) { return cell.status === "RUNNING"; }).length;
      message.textContent = "cancelled" + (stopping ? "; " + stopping + " running cell(s) stopping" : "");
      setTimeout(function () { window.location.reload(); }, 600);
    } catch (error) {
      message.textContent = "cancel failed: " + error.message;
      button.disabled = false;
      button.textContent = LABEL;
    }
  }

  button.addEventListener("click", function () {
    if (armed === null) {  // the first click: ask once more, on the button
      button.textContent = "click again to cancel every cell";
      armed = setTimeout(function () { armed = null; button.textContent = LABEL; }, CONFIRM_MS);
      return;
    }
    clearTimeout(armed);
    armed = null;
    cancel();
  });
})();
