// The sweeps index: tick two or more seed sets to open them compared (/seed-sets/compare?sets=7,9),
// in the order they were ticked: the first is the reference the others' steps are measured against.
(function () {
  "use strict";
  var boxes = document.querySelectorAll(".pick-set");
  var button = document.getElementById("compare-sets-button");
  var picked = [];
  function update(box) {
    picked = picked.filter(function (id) { return id !== box.value; });
    if (box.checked) picked.push(box.value);
    document.getElementById("compare-sets").value = picked.join(",");
    button.disabled = picked.length < 2;
  }
  boxes.forEach(function (box) {
    box.checked = false;  // a restored form would not say in which order its boxes were ticked
    box.addEventListener("change", function () { update(box); });
  });
})();
