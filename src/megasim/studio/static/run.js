// Run dashboard: live progress (Server-Sent Events), outcome charts, breakdowns,
// model metrics and events; pause / resume / stop.
"use strict";
(() => {
  const { api, el, fmt, time, duration, badge, table, confirmAction, flash, plotLayout, plotConfig } = studio;
  studio.nav("run");
  const id = encodeURIComponent(studio.runId());
  const LIVE = ["running", "paused", "stopping"];
  let steps = [];
  let events = [];
  let summary = null;
  let histStep = null;
  let by = "model";

  // --- live channel ---------------------------------------------------------------
  function connect() {
    const source = new EventSource(`/api/runs/${id}/live`);
    source.addEventListener("status", (e) => { const d = JSON.parse(e.data); showStatus(d.summary, d.status); });
    source.addEventListener("steps", (e) => {
      const d = JSON.parse(e.data);
      steps = d.reset ? d.steps : steps.concat(d.steps);
      drawSteps();
      refreshStepData();
    });
    source.addEventListener("events", (e) => {
      const d = JSON.parse(e.data);
      events = d.reset ? d.events : events.concat(d.events);
      drawEvents();
    });
    source.onerror = () => { document.getElementById("step-progress").textContent = "reconnecting…"; };
  }

  function showStatus(s, status) {
    summary = s;
    document.getElementById("title").textContent = s.name || s.run_id;
    const stateBox = document.getElementById("state");
    stateBox.replaceChildren(badge(s.state), " ", ...s.models.map((m) => m.stand_in ?
      el("span", { class: "badge standin", title: "labelled non-LLM stand-in: never LLM behaviour" }, `${m.name}: ${m.backend} stand-in`) :
      el("span", { class: "muted small" }, `${m.name}: ${m.backend} `)));
    const live = LIVE.includes(s.state);
    document.getElementById("pause").disabled = !live || (status && status.paused);
    document.getElementById("resume").disabled = !live || !(status && status.paused);
    document.getElementById("stop").disabled = !live || (status && status.stop_requested);
    const total = s.steps_total || 0;
    const inStep = status && status.in_step && live;
    const agents = (status && status.agents) || s.agents || 0;
    const done = inStep ? status.decisions_done : 0;
    const fraction = total ? (s.steps_done + (agents ? done / agents : 0)) / total : 0;
    document.getElementById("bar").style.width = `${Math.min(100, fraction * 100).toFixed(1)}%`;
    document.getElementById("step-label").textContent = inStep ? `step ${status.step} of ${total}` : `${s.steps_done} of ${total} steps done`;
    document.getElementById("step-progress").textContent = inStep ?
      `${fmt(done)} / ${fmt(agents)} decisions in this step` : (status && status.paused ? "paused at a step boundary" : "");
    let inFlight = 0;
    if (status && live) {  // local shards share one process's clients: count them once
      const shared = status.shards.find((sh) => sh.shared);
      inFlight = shared ? shared.model_calls_in_flight || 0
        : status.shards.reduce((a, sh) => a + (sh.model_calls_in_flight || 0), 0);
    }
    const stats = [["agents", fmt(s.agents)], ["model calls", fmt(s.calls)], ["calls in flight", fmt(inFlight)],
      ["tokens", fmt(s.tokens)], ["invalid", fmt(s.invalid)], ["errors", fmt(s.errors)],
      ["started", time(s.started)], ["duration", duration(s.duration_s)], ["runtime", `${s.runtime} × ${s.shards}`]];
    document.getElementById("stats").replaceChildren(...stats.map(([k, v]) =>
      el("div", { class: "stat" }, el("div", { class: "v" }, v), el("div", { class: "k" }, k))));
  }

  async function command(action) {
    const verbs = { pause: "Pause the run at the next step boundary?", resume: "Resume the run?",
      stop: "Stop the run at the next step boundary? It is checkpointed; `megasim resume` completes it." };
    if (!(await confirmAction(verbs[action]))) return;
    try {
      await api(`/api/runs/${id}/control`, { json: { action } });
      flash(document.getElementById("notice"), `${action} requested; the driver acts on it within a second`);
    } catch (e) { flash(document.getElementById("notice"), e.message, true); }
  }
  for (const action of ["pause", "resume", "stop"]) {
    document.getElementById(action).addEventListener("click", () => command(action));
  }

  // --- charts ---------------------------------------------------------------------
  function drawSteps() {
    const x = steps.map((m) => m.step);
    const keys = new Set();
    for (const m of steps) for (const [k, v] of Object.entries(m.outcome || {})) {
      if (typeof v === "number" && !["n", "valid", "invalid"].includes(k)) keys.add(k);
    }
    const medians = steps.map((m) => (m._median === undefined ? null : m._median));
    const traces = [...keys].map((k) => ({ x, y: steps.map((m) => (m.outcome || {})[k] ?? null), name: k, mode: "lines+markers" }));
    if (medians.some((v) => v !== null)) traces.push({ x, y: medians, name: "median", mode: "lines+markers", line: { dash: "dot" } });
    Plotly.react("outcome", traces, plotLayout({ xaxis: { title: "step", dtick: 1 } }), plotConfig);
    // per-part outcomes: any list of records in the outcome (the game's "groups", the chat's "rooms")
    const first = steps.length ? steps[0].outcome || {} : {};
    const partKey = Object.keys(first).find((k) => Array.isArray(first[k]) && first[k].length && typeof first[k][0] === "object");
    const idKey = partKey ? Object.keys(first[partKey][0])[0] : null;
    const parts = (m) => (partKey ? (m.outcome || {})[partKey] || [] : []);
    const groupTraces = [];
    const groupIds = new Set();
    for (const m of steps) for (const g of parts(m)) groupIds.add(g[idKey]);
    const groupList = [...groupIds].slice(0, 40);
    for (const gid of groupList) {
      groupTraces.push({ x, y: steps.map((m) => (parts(m).find((g) => g[idKey] === gid) || {}).mean ?? null),
        name: `${idKey} ${gid}`, mode: "lines+markers" });
    }
    Plotly.react("groups", groupTraces, plotLayout({ xaxis: { title: "step", dtick: 1 }, yaxis: { title: "mean answer" },
      showlegend: groupList.length <= 12 }), plotConfig);
    const sum = (key) => steps.map((m) => m[key] || 0);
    Plotly.react("validity", [
      { x, y: steps.map((m) => m.decisions - (m.invalid || 0) - (m.errors || 0)), name: "valid", type: "bar", marker: { color: "#1f8a4c" } },
      { x, y: sum("invalid"), name: "invalid", type: "bar", marker: { color: "#b7791f" } },
      { x, y: sum("errors"), name: "failed calls", type: "bar", marker: { color: "#c53030" } },
    ], plotLayout({ barmode: "stack", xaxis: { title: "step", dtick: 1 } }), plotConfig);
    const select = document.getElementById("hist-step");
    const current = histStep ?? (x.length ? x[x.length - 1] : null);
    select.replaceChildren(...x.map((s) => el("option", { value: s, selected: s === current }, `step ${s}`)));
    drawModels();
  }

  // Called from the live channel and the step picker: a failure (the studio stopped, a
  // request refused) is shown on the page, never left as an unhandled rejection.
  function refreshStepData() {
    return loadStepData().catch((e) => flash(document.getElementById("notice"), `cannot load the step's data: ${e.message}`, true));
  }

  async function loadStepData() {
    if (!steps.length) return;
    const step = histStep ?? steps[steps.length - 1].step;
    const v = await api(`/api/runs/${id}/values?step=${step}`);
    const centers = v.edges.slice(0, -1).map((e, i) => (e + v.edges[i + 1]) / 2);
    Plotly.react("histogram", [{ x: centers, y: v.counts, type: "bar", marker: { color: "#2f6fde" }, name: "answers" }],
      plotLayout({ xaxis: { title: "answer" }, yaxis: { title: "agents" }, bargap: 0.02 }), plotConfig);
    document.getElementById("hist-stats").textContent = v.n ?
      `${fmt(v.valid)} valid · ${fmt(v.invalid)} invalid · ${fmt(v.errors)} failed · median ${v.approximate ? "≈ " : ""}${fmt(v.quantiles ? v.quantiles.median : null)}` : "";
    const medians = await api(`/api/runs/${id}/quantiles`);
    for (const q of medians) {
      const record = steps.find((m) => m.step === q.step);
      if (record) record._median = q.median ?? null;
    }
    drawSteps();
    await drawBreakdown();
  }

  async function drawBreakdown() {
    let b;
    try { b = await api(`/api/runs/${id}/breakdown?by=${encodeURIComponent(by)}`); } catch (e) {
      document.getElementById("breakdown-table").replaceChildren(el("div", { class: "error" }, e.message)); return;
    }
    const keys = [...new Set(b.rows.map((r) => r.key))];
    const traces = keys.map((k) => {
      const rows = b.rows.filter((r) => r.key === k);
      return { x: rows.map((r) => r.step), y: rows.map((r) => r.mean), name: `${by}=${k}`, mode: "lines+markers" };
    });
    Plotly.react("breakdown", traces, plotLayout({ xaxis: { title: "step", dtick: 1 }, yaxis: { title: "mean answer" } }), plotConfig);
    const last = Math.max(...b.rows.map((r) => r.step));
    const rows = b.rows.filter((r) => r.step === last);
    const columns = [{ key: "key", label: by }, { key: "n", num: true }, { key: "valid", num: true },
      { key: "mean", num: true }, { key: "median", num: true }, { key: "std", num: true }];
    const shown = rows.some((r) => r.median !== null) ? columns : columns.filter((c) => c.key !== "median");
    document.getElementById("breakdown-table").replaceChildren(
      el("div", { class: "muted small" }, `step ${last}`), table(shown, rows, { empty: "No decisions yet." }));
  }

  function drawModels() {
    const rows = [];
    const latest = steps.length ? steps[steps.length - 1] : null;
    const layer = latest && latest.model_layer ? latest.model_layer : {};
    for (const m of steps.slice(-3)) {  // the last three steps; every step is in metrics.jsonl
      for (const [name, s] of Object.entries(m.models || {})) {
        const tokens = (s.tokens_in || 0) + (s.tokens_out || 0);
        rows.push({ step: m.step, model: name, calls: s.calls, errors: s.errors, invalid: s.invalid,
          tokens, tokens_s: m.wall_s ? tokens / m.wall_s : null, p50: s.latency_p50_ms, p95: s.latency_p95_ms });
      }
    }
    const flat = [];  // Ray: {"shard=k": {model: counters}}; local: {model: counters}
    for (const [name, l] of Object.entries(layer)) {
      const nested = name.startsWith("shard=") && !("merge" in l || "cache" in l || "requests" in l);
      if (nested) for (const [model, c] of Object.entries(l)) flat.push([`${model} (${name})`, c]);
      else flat.push([name, l]);
    }
    const layerRows = flat.map(([name, l]) => ({ model: name,
      merge: l.merge ? `${fmt(l.merge.requests)} requests → ${fmt(l.merge.calls)} calls (${fmt(l.merge.merged)} merged)` : "–",
      cache: l.cache ? `${l.cache.hits} hits / ${l.cache.misses} misses` : "–",
      retries: l.retries ?? null, in_flight: l.in_flight ?? null }));
    document.getElementById("models").replaceChildren(
      table([{ key: "step", num: true }, { key: "model" }, { key: "calls", num: true }, { key: "errors", num: true },
        { key: "invalid", num: true }, { key: "tokens", num: true }, { key: "tokens_s", label: "tokens/s", num: true },
        { key: "p50", label: "p50 ms", num: true }, { key: "p95", label: "p95 ms", num: true }], rows.reverse(),
      { empty: "No step finished yet." }),
      layerRows.length ? el("div", { style: "margin-top:10px" }, el("b", {}, "Model layer (since the run started)"),
        table([{ key: "model" }, { key: "in_flight", label: "in flight", num: true }, { key: "retries", num: true },
          { key: "cache", label: "cache" }, { key: "merge", label: "merging", render: (r) => el("span", { class: "mono" }, r.merge) }], layerRows)) : "");
  }

  function drawEvents() {
    const rows = [...events].reverse().map((e) => {
      const { time: t, event, ...rest } = e;
      return { time: t, event, detail: Object.entries(rest).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join("  ") };
    });
    document.getElementById("events").replaceChildren(table([
      { key: "time", render: (r) => time(r.time) }, { key: "event", render: (r) => el("b", {}, r.event) },
      { key: "detail", render: (r) => el("span", { class: "mono" }, r.detail) }], rows, { empty: "No events yet." }));
  }

  document.getElementById("hist-step").addEventListener("change", (e) => { histStep = Number(e.target.value); refreshStepData(); });
  document.getElementById("by").addEventListener("change", (e) => { by = e.target.value; drawBreakdown(); });

  async function loadColumns() {
    try {
      const columns = await api(`/api/runs/${id}/columns`);
      const skip = new Set(["agent_id", "raw_text", "error", "prompt_id", "text", "value", "background", "step", "tokens_in", "tokens_out", "latency_ms"]);
      const names = columns.map((c) => c.name).filter((n) => !skip.has(n) && !n.startsWith("background"));
      document.getElementById("by").replaceChildren(...names.map((n) => el("option", { selected: n === by }, n)));
    } catch (e) { /* no population yet */ }
  }
  loadColumns();
  connect();
})();
