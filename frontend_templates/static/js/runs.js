/* The runs list: ticking runs enables "compare selected", which opens /compare?runs=a,b[,c]. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", () => {
    const picks = () => [...document.querySelectorAll("input.pick:checked")].map((box) => box.value);
    const button = document.getElementById("compare-button");
    const hint = document.getElementById("compare-hint");
    const update = () => {
      const chosen = picks();
      document.getElementById("compare-runs").value = chosen.join(",");
      button.disabled = chosen.length < 2;
      hint.textContent = chosen.length < 2 ? "tick two or three runs" : "runs " + chosen.join(", ");
    };
    document.querySelectorAll("input.pick").forEach((box) => box.addEventListener("change", update));
    update();
  });
})();
