// Runs page: every run with its state; sortable; start and delete runs.
"use strict";
(() => {
  const { api, el, fmt, time, duration, badge, table, confirmAction, flash } = studio;
  studio.nav("runs");
  let sort = "started";
  let desc = true;
  let rows = [];

  const columns = [
    { key: "run_id", label: "run", render: (r) => el("a", { href: `/runs/${encodeURIComponent(r.run_id)}` }, r.run_id) },
    { key: "state", label: "status", render: (r) => badge(r.state) },
    { key: "scenario" },
    { key: "models", label: "models", sortable: false, render: (r) => r.models.map((m) =>
      el("span", { title: `backend ${m.backend}` }, m.name, " ", m.stand_in ? el("span", { class: "badge standin", title: "a labelled non-LLM stand-in: not LLM behaviour" }, "stand-in") : "", " ")) },
    { key: "agents", num: true },
    { key: "steps_done", label: "steps", num: true, render: (r) => `${fmt(r.steps_done)} / ${fmt(r.steps_total)}` },
    { key: "calls", label: "model calls", num: true },
    { key: "tokens", num: true },
    { key: "errors", num: true },
    { key: "started", label: "started", render: (r) => time(r.started) },
    { key: "duration_s", label: "duration", num: true, render: (r) => duration(r.duration_s) },
    { key: "actions", label: "", sortable: false, render: (r) => el("span", {},
      el("a", { href: `/runs/${encodeURIComponent(r.run_id)}/report` }, "report"), " ",
      ["running", "paused", "stopping"].includes(r.state) ? "" :
        el("button", { class: "danger", "data-delete": r.run_id, onclick: () => remove(r.run_id) }, "Delete")) },
  ];

  function render() {
    const sorted = [...rows].sort((a, b) => {
      const x = a[sort]; const y = b[sort];
      const cmp = x === y ? 0 : (x === null || x === undefined) ? 1 : (y === null || y === undefined) ? -1 : x < y ? -1 : 1;
      return desc ? -cmp : cmp;
    });
    document.getElementById("runs").replaceChildren(table(columns, sorted, {
      sort, desc, empty: "No runs yet. Start one below, or run `megasim run CONFIG --out RUNS_FOLDER`.",
      onSort: (key) => { desc = sort === key ? !desc : false; sort = key; render(); },
    }));
  }

  async function refresh() {
    try {
      rows = await api("/api/runs");
      render();
      document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      document.getElementById("updated").textContent = `cannot reach the studio: ${e.message}`;
    }
  }

  async function remove(id) {
    if (!(await confirmAction(`Delete run ${id} and every file in its directory?`))) return;
    try { await api(`/api/runs/${encodeURIComponent(id)}`, { method: "DELETE" }); } catch (e) { alert(e.message); }
    refresh();
  }

  async function loadConfigs() {
    let configs;
    try { configs = await api("/api/configs"); } catch (e) {
      document.getElementById("start-result").textContent = `cannot list configs: ${e.message}`; return;
    }
    const select = document.getElementById("config");
    select.replaceChildren(...(configs.length ? configs.map((c) => el("option", {}, c))
      : [el("option", { value: "" }, "no YAML configs in the runs folder")]));
  }

  document.getElementById("start").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = {};
    for (const [k, v] of form.entries()) if (v !== "") body[k] = ["agents", "rounds", "shards"].includes(k) ? Number(v) : v;
    const target = document.getElementById("start-result");
    if (!(await confirmAction(`Start a run from ${body.config || "?"}?`))) return;
    try {
      const started = await api("/api/runs", { json: body });
      flash(target, `started ${started.run_id}`);
      setTimeout(refresh, 1000);
    } catch (e) { flash(target, e.message, true); }
  });

  loadConfigs();
  refresh();
  setInterval(refresh, 2000);
})();
