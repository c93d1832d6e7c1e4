/* The New-run form: a preset fills every field; the budget estimate follows the fields live
 * (POST /api/estimate); "chosen modules" enables its text box. The form itself is a plain HTML POST. */
(function () {
  "use strict";
  const CB = window.CB;
  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("new-run");
    const presets = JSON.parse(document.getElementById("presets-data").textContent);
    const budget = document.getElementById("budget");

    function spec() {
      const flat = {};
      form.querySelectorAll("fieldset.spec [name]").forEach((input) => {
        const text = input.value.trim();
        if (text === "") flat[input.name] = null;
        else if (text === "true" || text === "false") flat[input.name] = text === "true";
        else if (/^-?\d+$/.test(text)) flat[input.name] = parseInt(text, 10);
        else if (!isNaN(Number(text))) flat[input.name] = Number(text);
        else flat[input.name] = text;
      });
      return flat;
    }

    let timer = null, ticket = 0;
    function estimate() {
      window.clearTimeout(timer);
      timer = window.setTimeout(async () => {
        const mine = ++ticket;
        try {
          const result = await CB.post("/estimate", {spec: spec()});
          if (mine === ticket) { budget.textContent = result.text; budget.classList.remove("error"); }
        } catch (error) {
          if (mine !== ticket) return;
          budget.textContent = error.message;  // CB.problems: every "field: msg" of a 422
          budget.classList.add("error");
        }
      }, 250);
    }

    document.getElementById("f-preset").addEventListener("change", (event) => {
      const values = presets[event.target.value];
      if (!values) return;
      for (const [key, value] of Object.entries(values)) {
        const input = document.getElementById("f-" + key);
        if (input) input.value = value === null ? "" : String(value);
      }
      estimate();
    });

    const modules = document.getElementById("f-trainable_modules");
    const syncModules = () => {
      const choice = form.querySelector('input[name="trainable_choice"]:checked');
      modules.disabled = !choice || choice.value !== "custom";
    };
    form.querySelectorAll('input[name="trainable_choice"]').forEach((radio) => radio.addEventListener("change", syncModules));
    syncModules();

    form.querySelectorAll("fieldset.spec [name]").forEach((input) => {
      input.addEventListener("input", estimate);
      input.addEventListener("change", estimate);
    });

    function numbers(text) {
      return text.split(",").map((part) => part.trim()).filter((part) => part !== "").map(Number);
    }

    function seedCount(text) {  // how many seeds "0-7, 10" names (the server parses and checks them)
      let n = 0;
      for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
        const range = part.match(/^(\d+)\s*-\s*(\d+)$/);
        n += range ? Math.max(0, Number(range[2]) - Number(range[1]) + 1) : 1;
      }
      return n;
    }

    function packSize() {
      const text = document.getElementById("f-pack_size").value.trim();
      return text === "" ? null : Number(text);
    }

    function describe() {  // the button and the estimate say what will be queued: one run, a seed set, a grid, a study
      const button = document.getElementById("launch");
      const study = document.getElementById("f-study").value;
      const seedsText = document.getElementById("f-sweep_seeds").value.trim();
      const seeds = seedCount(seedsText);
      let cells = 1, axes = 0;
      for (const i of [1, 2]) {
        const values = numbers(document.getElementById("f-sweep_values" + i).value);
        if (document.getElementById("f-sweep_key" + i).value && values.length) { cells *= values.length; axes += 1; }
      }
      const runs = cells * (seedsText ? seeds : 1);
      document.getElementById("sweep-errors").hidden = true;  // an edit: the last refusal may no longer apply
      const scope = document.getElementById("budget-scope");
      if (study) {
        button.textContent = "Launch study " + study;
        scope.textContent = "a study of several seed sets with its own presets (the spec above is not used). ";
      } else if (axes || seedsText) {
        const what = axes ? "a sweep" : "a seed set";
        const count = runs === 1 ? "1 run" : runs + " runs";
        button.textContent = runs > 0 ? "Launch " + count + " (" + what + ")" : "Launch " + what;
        scope.textContent = runs > 0 ? count + ", each: " : "";
      } else {
        button.textContent = "Launch run";
        scope.textContent = "";
      }
    }
    form.querySelectorAll("#sweep input, #sweep select").forEach((input) => {
      input.addEventListener("input", describe);
      input.addEventListener("change", describe);
    });
    describe();

    function sweepBody() {
      const axes = {};
      for (const i of [1, 2]) {
        const key = document.getElementById("f-sweep_key" + i).value;
        const values = numbers(document.getElementById("f-sweep_values" + i).value);
        if (key && values.length) axes[key] = values;
      }
      const seeds = document.getElementById("f-sweep_seeds").value.trim();
      if (!Object.keys(axes).length && !seeds) return null;
      const overrides = spec();
      const run = form.querySelector("#f-init_run").value.trim(), step = form.querySelector("#f-init_step").value.trim();
      if (run || step) overrides.init_from = run + "@" + step;
      const choice = form.querySelector('input[name="trainable_choice"]:checked');
      overrides.trainable = choice && choice.value === "custom" ? modules.value.trim() : (choice ? choice.value : "all");
      return {name: form.querySelector("input[name=name]").value.trim() || null, overrides, axes,
              seeds: seeds || null, pack_size: packSize()};
    }

    form.addEventListener("submit", async (event) => {
      const button = document.getElementById("launch");
      const study = document.getElementById("f-study").value;
      const sweep = study ? {study, pack_size: packSize()} : sweepBody();
      if (sweep) {  // a grid, a seed set or a study: the API queues it, and its page follows it
        event.preventDefault();
        const box = document.getElementById("sweep-errors");
        box.hidden = true;  // a new try: the last refusal no longer applies
        button.disabled = true;
        try {
          const created = await CB.post(study ? "/studies" : "/sweeps", sweep);
          window.location.href = created.url;
        } catch (error) {
          box.textContent = "Nothing was queued: " + error.message;  // CB.problems: every "field: msg" of a 422
          box.hidden = false;
          button.disabled = false;
        }
        return;
      }
      window.setTimeout(() => { button.disabled = true; }, 0);  // one click, one run (the idempotency key covers the rest)
    });
  });
})();
