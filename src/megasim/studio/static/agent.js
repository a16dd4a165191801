// One agent: persona, decisions with the prompt as sent, memory, messages; interview.
"use strict";
(() => {
  const { api, el, fmt, table, flash } = studio;
  studio.nav("agents");
  const id = encodeURIComponent(studio.runId());
  const agentId = Number(location.pathname.split("/").pop());

  function kv(obj) {
    const rows = Object.entries(obj || {}).map(([k, v]) => ({ k, v }));
    return table([{ key: "k", label: "attribute" }, { key: "v", label: "value",
      render: (r) => el("span", {}, typeof r.v === "object" && r.v !== null ? JSON.stringify(r.v)
        : r.k.endsWith("_id") || r.k === "group" ? String(r.v) : fmt(r.v)) }], rows,
    { empty: "None." });
  }

  function promptText(messages) {
    if (!messages) return "(not recorded for this run)";
    return messages.map((m) => `[${m.role}]\n${m.content}`).join("\n\n");
  }

  async function load() {
    let a;
    try { a = await api(`/api/runs/${id}/agents/${agentId}`); } catch (e) {
      flash(document.getElementById("notice"), e.message, true); return;
    }
    document.getElementById("title").textContent = `Agent ${agentId}`;
    document.getElementById("persona").replaceChildren(kv(a.persona));
    document.getElementById("state").replaceChildren(a.state ? el("pre", { class: "mono" }, JSON.stringify(a.state, null, 2))
      : el("div", { class: "empty" }, "No state in the latest checkpoint."));
    document.getElementById("messages").replaceChildren(table([{ key: "sender", num: true }, { key: "receiver", num: true },
      { key: "step", num: true }, { key: "content" }], a.messages, { empty: "No messages in flight." }));
    document.getElementById("decisions").replaceChildren(table([
      { key: "step", num: true }, { key: "prompt_id", render: (d) => el("span", { class: "mono" }, d.prompt_id) },
      { key: "value", num: true }, { key: "valid" }, { key: "tokens_in", label: "tokens in", num: true },
      { key: "tokens_out", label: "tokens out", num: true }, { key: "latency_ms", label: "latency ms", num: true },
      { key: "error", render: (d) => el("span", { class: "error" }, d.error || "") },
      { key: "detail", label: "prompt and answer", render: (d) => el("details", {}, el("summary", {}, "show"),
        el("b", {}, "Prompt as sent"), el("pre", { class: "mono" }, promptText(d.prompt)),
        el("b", {}, "Raw model text"), el("pre", { class: "mono" }, d.raw_text ?? "(no answer)"),
        d.text ? el("div", {}, el("b", {}, "Said: "), d.text) : "") },
    ], a.decisions, { empty: "No decisions yet." }));
  }

  document.getElementById("ask").addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = document.getElementById("question").value.trim();
    if (!question) return;
    const box = document.getElementById("answer");
    box.replaceChildren(el("div", { class: "muted" }, "asking…"));
    try {
      const out = await api(`/api/runs/${id}/interview`, { json: { agent_id: agentId, question } });
      const a = out.answers[0];
      box.replaceChildren(el("div", { class: "notice" }, el("b", {}, `${a.model} (${a.backend}): `), a.raw_text ?? a.error));
    } catch (e) { flash(box, e.message, true); }
  });
  load();
})();
