// Cluster view: driver, nodes, shards and partitions with health; restart a shard.
"use strict";
(() => {
  const { api, el, fmt, time, badge, table, confirmAction, flash } = studio;
  studio.nav("cluster");
  const id = encodeURIComponent(studio.runId());

  async function restart(shard) {
    if (!(await confirmAction(`Restart shard ${shard}? Its actor is killed and rebuilt from the last checkpoint; the step reruns on it.`))) return;
    try {
      await api(`/api/runs/${id}/control`, { json: { action: "restart_shard", shard } });
      flash(document.getElementById("notice"), `restart of shard ${shard} requested`);
    } catch (e) { flash(document.getElementById("notice"), e.message, true); }
  }

  async function refresh() {
    let c;
    try { c = await api(`/api/runs/${id}/cluster`); } catch (e) {
      flash(document.getElementById("notice"), e.message, true); return;
    }
    const live = ["running", "paused", "stopping"].includes(c.state);
    document.getElementById("state").replaceChildren(badge(c.state));
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.getElementById("driver").replaceChildren(table(
      [{ key: "host" }, { key: "pid", render: (d) => String(d.pid ?? "–") }, { key: "driver_cpu_percent", label: "CPU %", num: true },
        { key: "driver_rss_mb", label: "RSS MB", num: true }],
      c.driver.host ? [c.driver] : [], { empty: "No driver has reported yet." }));
    document.getElementById("nodes").replaceChildren(table(
      [{ key: "node" }, { key: "host" }, { key: "shards", num: true }, { key: "agents", num: true }],
      c.nodes, { empty: "No shard has reported yet." }));
    const ray = c.shards.some((s) => !s.shared);
    document.getElementById("shards").replaceChildren(table([
      { key: "shard", num: true }, { key: "state", label: "health", render: (s) => badge(s.state || "ok") },
      { key: "host" }, { key: "node", render: (s) => el("span", { class: "mono" }, fmt(s.node)) },
      { key: "pid", render: (s) => String(s.pid ?? "–") }, { key: "agents", num: true }, { key: "step", num: true, render: (s) => fmt(s.step ?? c.step) },
      { key: "done", label: "done in step", num: true }, { key: "cpu_percent", label: "CPU %", num: true },
      { key: "rss_mb", label: "RSS MB", num: true }, { key: "model_calls_in_flight", label: "calls in flight", num: true },
      { key: "act", label: "", render: (s) => live && ray ? el("button", { "data-restart": s.shard, onclick: () => restart(s.shard) }, "Restart") : "" },
    ], c.shards, { empty: "No shard has reported yet." }));
    if (c.shards.length && !ray) {
      document.getElementById("shards").append(el("p", { class: "muted small" },
        "Local runtime: every shard runs in the driver process and shares its model clients, so CPU, memory and calls in flight are the process's."));
    }
    document.getElementById("partitions").replaceChildren(table(
      [{ key: "partition", num: true }, { key: "state", render: (p) => badge(p.state) }],
      c.partitions, { empty: "This run has no keyed-state partition actors." }));
    document.getElementById("history").replaceChildren(table(
      [{ key: "time", render: (e) => time(e.time) }, { key: "event" }, { key: "shard", num: true },
        { key: "step", num: true }, { key: "node", render: (e) => fmt(e.node || e.old_node) },
        { key: "reason", render: (e) => fmt(e.reason || e.origin) }],
      c.history, { empty: "No shard or partition was lost in this run." }));
  }
  refresh();
  setInterval(refresh, 1000);
})();
