// Agent browser: server-side filters, sorting and paging over up to a million agents.
"use strict";
(() => {
  const { api, el, fmt, table, flash } = studio;
  studio.nav("agents");
  const id = encodeURIComponent(studio.runId());
  const params = new URLSearchParams(location.search);
  const state = { where: params.getAll("where"), sort: params.get("sort") || "agent_id",
    desc: params.get("desc") === "true", offset: Number(params.get("offset") || 0), limit: 50,
    step: params.get("step") || "" };
  let columns = [];

  function query(extra = {}) {
    const q = new URLSearchParams();
    for (const w of state.where) q.append("where", w);
    q.set("sort", state.sort); q.set("desc", state.desc);
    if (state.step) q.set("step", state.step);
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    return q;
  }

  function chips() {
    document.getElementById("chips").replaceChildren(...state.where.map((w, i) =>
      el("span", {}, w, el("b", { title: "remove", onclick: () => { state.where.splice(i, 1); state.offset = 0; load(); } }, "×"))));
  }

  async function load() {
    chips();
    const q = query({ offset: state.offset, limit: state.limit });
    history.replaceState(null, "", `?${q}`);
    let page;
    try { page = await api(`/api/runs/${id}/agents?${q}`); } catch (e) {
      flash(document.getElementById("notice"), e.message, true); return;
    }
    document.getElementById("notice").replaceChildren();
    columns = page.columns;
    const colSelect = document.getElementById("f-col");
    if (!colSelect.options.length) colSelect.replaceChildren(...columns.map((c) => el("option", { value: c.name }, c.name)));
    const shown = columns.filter((c) => !["prompt_id", "tokens_in", "tokens_out", "text"].includes(c.name));
    const cols = shown.map((c) => ({ key: c.name, num: c.kind === "number",
      render: c.name === "agent_id" ? (r) => el("a", { href: `/runs/${id}/agents/${r.agent_id}` }, r.agent_id)
        : c.kind === "text" ? (r) => el("span", { title: r[c.name] || "" }, fmt(r[c.name])) : null }));
    document.getElementById("agents").replaceChildren(table(cols, page.rows, {
      sort: state.sort, desc: state.desc, empty: "No agent matches these filters.",
      onSort: (key) => { state.desc = state.sort === key ? !state.desc : false; state.sort = key; state.offset = 0; load(); },
    }));
    const end = Math.min(state.offset + page.rows.length, page.matching);
    document.getElementById("counts").textContent =
      `${fmt(page.matching)} of ${fmt(page.agents)} agents match · decisions of step ${page.step ?? "–"}`;
    document.getElementById("page").textContent = page.matching ? `${fmt(state.offset + 1)}–${fmt(end)} of ${fmt(page.matching)}` : "";
    document.getElementById("prev").disabled = state.offset === 0;
    document.getElementById("next").disabled = end >= page.matching;
    for (const format of ["csv", "parquet"]) {
      document.getElementById(`export-${format}`).href = `/api/runs/${id}/agents/export?${query({ format })}`;
    }
    const stepSelect = document.getElementById("step");
    if (!stepSelect.options.length) {
      const steps = await api(`/api/runs/${id}/steps`);
      stepSelect.replaceChildren(el("option", { value: "" }, "latest"), ...steps.map((m) =>
        el("option", { value: m.step, selected: String(m.step) === state.step }, m.step)));
    }
  }

  document.getElementById("filter").addEventListener("submit", (event) => {
    event.preventDefault();
    const col = document.getElementById("f-col").value;
    const op = document.getElementById("f-op").value;
    const val = document.getElementById("f-val").value;
    if (!col) return;
    state.where.push(`${col}${op}${val}`);
    state.offset = 0;
    document.getElementById("f-val").value = "";
    load();
  });
  document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); load(); });
  document.getElementById("next").addEventListener("click", () => { state.offset += state.limit; load(); });
  document.getElementById("limit").addEventListener("change", (e) => { state.limit = Number(e.target.value); state.offset = 0; load(); });
  document.getElementById("step").addEventListener("change", (e) => { state.step = e.target.value; state.offset = 0; load(); });
  load();
})();
