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

    function sweepBody() {
      const axes = {};
      for (const i of [1, 2]) {
        const key = document.getElementById("f-sweep_key" + i).value;
        const values = numbers(document.getElementById("f-sweep_values" + i).value);
        if (key && values.length) axes[key] = values;
      }
      const seeds = numbers(document.getElementById("f-sweep_seeds").value);
      if (!Object.keys(axes).length && !seeds.length) return null;
      const overrides = spec();
      const run = form.querySelector("#f-init_run").value.trim(), step = form.querySelector("#f-init_step").value.trim();
      if (run || step) overrides.init_from = run + "@" + step;
      const choice = form.querySelector('input[name="trainable_choice"]:checked');
      overrides.trainable = choice && choice.value === "custom" ? modules.value.trim() : (choice ? choice.value : "all");
      return {name: form.querySelector("input[name=name]").value.trim() || null, overrides, axes,
              seeds: seeds.length ? seeds : null};
    }

    form.addEventListener("submit", async (event) => {
      const button = document.getElementById("launch");
      const sweep = sweepBody();
      if (sweep) {  // a grid of runs: the sweep API queues it, and its page follows it
        event.preventDefault();
        const box = document.getElementById("sweep-errors");
        button.disabled = true;
        try {
          const created = await CB.post("/sweeps", sweep);
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
