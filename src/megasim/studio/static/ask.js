// Interviews and surveys: ask, list what was asked, chart answers by an attribute.
"use strict";
(() => {
  const { api, el, fmt, table, flash, plotLayout, plotConfig } = studio;
  studio.nav("ask");
  const id = encodeURIComponent(studio.runId());
  let current = null;

  async function listInquiries(select) {
    const list = await api(`/api/runs/${id}/inquiries`);
    const box = document.getElementById("inquiry");
    box.replaceChildren(...list.map((q) => el("option", { value: q.inquiry_id, selected: q.inquiry_id === select },
      `${q.kind}: ${q.question.slice(0, 60)} (${q.agents} agents, ${q.backends})`)));
    document.getElementById("chart").style.display = list.length ? "" : "none";
    box.style.display = list.length ? "" : "none";
    if (!list.length) {
      document.getElementById("answers").replaceChildren(el("div", { class: "empty" },
        "Nothing asked yet: interview an agent or run a survey above."));
      return;
    }
    await show(select || list[0].inquiry_id);
  }

  async function show(inquiryId) {
    current = inquiryId;
    const by = document.getElementById("chart-by").value;
    const out = await api(`/api/runs/${id}/inquiries/${encodeURIComponent(inquiryId)}${by ? `?by=${encodeURIComponent(by)}` : ""}`);
    const standIn = out.answers.some((a) => ["surrogate", "scripted"].includes(a.backend));
    document.getElementById("answers").replaceChildren(
      standIn ? el("div", { class: "notice" }, "Answered by a stand-in model (surrogate or scripted): not LLM behaviour.") : "",
      table([{ key: "agent_id", num: true, render: (a) => el("a", { href: `/runs/${id}/agents/${a.agent_id}` }, a.agent_id) },
        { key: "model" }, { key: "backend" }, { key: "answer" }, { key: "valid" },
        { key: "raw_text", label: "raw text", render: (a) => el("span", { class: "mono" }, a.raw_text ?? "") },
        { key: "error", render: (a) => el("span", { class: "error" }, a.error || "") }], out.answers));
    const numeric = out.answers.some((a) => a.value !== null);
    let traces;
    if (out.chart.length) {
      const answers = [...new Set(out.chart.map((c) => c.answer))];
      traces = numeric ? [{ x: [...new Set(out.chart.map((c) => c.key))], type: "bar", name: "mean answer",
        y: [...new Set(out.chart.map((c) => c.key))].map((k) => {
          const rows = out.chart.filter((c) => c.key === k && c.mean !== null);
          const n = rows.reduce((a, r) => a + r.count, 0);
          return n ? rows.reduce((a, r) => a + r.mean * r.count, 0) / n : null; }) }]
        : answers.map((ans) => ({ type: "bar", name: ans, x: out.chart.filter((c) => c.answer === ans).map((c) => `${out.by}=${c.key}`),
          y: out.chart.filter((c) => c.answer === ans).map((c) => c.count) }));
    } else {
      const counts = {};
      for (const a of out.answers) { const k = a.answer ?? "(invalid)"; counts[k] = (counts[k] || 0) + 1; }
      traces = [{ type: "bar", x: Object.keys(counts), y: Object.values(counts), name: "agents" }];
    }
    Plotly.react("chart", traces, plotLayout({ barmode: "group", yaxis: { title: numeric && out.chart.length ? "mean answer" : "agents" } }), plotConfig);
  }

  document.getElementById("interview").addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = document.getElementById("i-result");
    box.replaceChildren(el("div", { class: "muted" }, "asking…"));
    try {
      const out = await api(`/api/runs/${id}/interview`, { json: {
        agent_id: Number(document.getElementById("i-agent").value), question: document.getElementById("i-question").value } });
      const a = out.answers[0];
      box.replaceChildren(el("div", { class: "notice" }, el("b", {}, `agent ${a.agent_id}, ${a.model} (${a.backend}): `), a.raw_text ?? a.error));
      await listInquiries(out.inquiry_id);
    } catch (e) { flash(box, e.message, true); }
  });

  document.getElementById("survey").addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = document.getElementById("s-result");
    const options = document.getElementById("s-options").value.split(",").map((s) => s.trim()).filter(Boolean);
    const low = document.getElementById("s-low").value;
    const high = document.getElementById("s-high").value;
    const body = { question: document.getElementById("s-question").value, options,
      where: document.getElementById("s-where").value.split(";").map((s) => s.trim()).filter(Boolean),
      sample: Number(document.getElementById("s-sample").value), seed: Number(document.getElementById("s-seed").value) };
    if (low !== "" && high !== "") { body.low = Number(low); body.high = Number(high); }
    box.replaceChildren(el("div", { class: "muted" }, "asking…"));
    try {
      const out = await api(`/api/runs/${id}/survey`, { json: body });
      const valid = out.answers.filter((a) => a.valid).length;
      flash(box, `${out.answers.length} agents asked, ${valid} valid answers`);
      await listInquiries(out.inquiry_id);
    } catch (e) { flash(box, e.message, true); }
  });

  document.getElementById("inquiry").addEventListener("change", (e) => show(e.target.value));
  document.getElementById("chart-by").addEventListener("change", () => current && show(current));

  async function loadColumns() {
    const columns = await api(`/api/runs/${id}/columns`);
    const decision = ["step", "value", "valid", "raw_text", "error", "prompt_id", "text", "tokens_in", "tokens_out", "latency_ms", "shard"];
    const pop = columns.map((c) => c.name).filter((n) => n !== "agent_id" && !decision.includes(n) && !n.startsWith("background"));
    document.getElementById("chart-by").replaceChildren(el("option", { value: "" }, "(answers only)"), ...pop.map((n) => el("option", {}, n)));
  }
  loadColumns().then(() => listInquiries(null));
})();
