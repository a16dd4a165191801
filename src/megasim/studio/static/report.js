// Report page: render the run's report and show its plots.
"use strict";
(() => {
  const { api, el, flash } = studio;
  studio.nav("report");
  const id = encodeURIComponent(studio.runId());

  async function showFiles() {
    const files = await api(`/api/runs/${id}/report`);
    const images = files.filter((f) => f.endsWith(".png"));
    const others = files.filter((f) => !f.endsWith(".png"));
    document.getElementById("files").replaceChildren(
      el("div", { class: "panel" }, el("h2", {}, "Files"), files.length ? el("div", {}, others.map((f) =>
        el("a", { href: `/api/runs/${id}/report/${f}`, style: "margin-right:12px" }, f))) :
        el("div", { class: "empty" }, "No report rendered yet.")),
      el("div", { class: "grid" }, images.map((f) => el("div", { class: "panel" }, el("h2", {}, f),
        el("img", { src: `/api/runs/${id}/report/${f}`, style: "max-width:100%", alt: f })))));
  }

  document.getElementById("render").addEventListener("click", async () => {
    const button = document.getElementById("render");
    button.disabled = true;
    try {
      const out = await api(`/api/runs/${id}/report`, { method: "POST" });
      document.getElementById("text").textContent = out.text;
      flash(document.getElementById("notice"), `report written: ${out.files.length} files`);
      await showFiles();
    } catch (e) { flash(document.getElementById("notice"), e.message, true); }
    button.disabled = false;
  });
  showFiles();
})();
