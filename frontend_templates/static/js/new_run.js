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
          const errors = (error.data && error.data.errors) || [];
          budget.textContent = errors.length ? errors.map((e) => e.field + ": " + e.message).join("; ") : error.message;
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

    form.addEventListener("submit", () => {  // one click, one run (the idempotency key covers the rest)
      const button = document.getElementById("launch");
      window.setTimeout(() => { button.disabled = true; }, 0);
    });
  });
})();
