/* The runs list: ticking runs enables "compare selected", which opens /compare?runs=a,b[,c] with the
 * runs in the order they were ticked (the first is the reference, A; the second is B). */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", () => {
    const boxes = [...document.querySelectorAll("input.pick")];
    let order = boxes.filter((box) => box.checked).map((box) => box.value);  // ticked before load (back button)
    const button = document.getElementById("compare-button");
    const hint = document.getElementById("compare-hint");
    const update = () => {
      document.getElementById("compare-runs").value = order.join(",");
      button.disabled = order.length < 2;
      hint.textContent = order.length < 2 ? "tick two or three runs"
        : order.map((id, i) => "ABCD".charAt(i) + " = #" + id).join(", ") + " (in the order ticked)";
    };
    boxes.forEach((box) => box.addEventListener("change", () => {
      order = order.filter((id) => id !== box.value);
      if (box.checked) order.push(box.value);
      update();
    }));
    update();
  });
})();
