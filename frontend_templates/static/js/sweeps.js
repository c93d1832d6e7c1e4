// The sweeps index: tick two or more seed sets to open them compared (/seed-sets/compare?sets=7,9).
(function () {
  "use strict";
  var boxes = document.querySelectorAll(".pick-set");
  var button = document.getElementById("compare-sets-button");
  function update() {
    var picked = Array.prototype.filter.call(boxes, function (b) { return b.checked; }).map(function (b) { return b.value; });
    document.getElementById("compare-sets").value = picked.join(",");
    button.disabled = picked.length < 2;
  }
  boxes.forEach(function (b) { b.addEventListener("change", update); });
  update();
})();
