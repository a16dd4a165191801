// megasim studio: helpers shared by every page (no framework, no build step).
"use strict";

const studio = (() => {
  const runId = () => {
    const m = location.pathname.match(/^\/runs\/([^/]+)/);
    return m ? decodeURIComponent(m[1]) : null;
  };

  async function api(path, options = {}) {
    const init = { credentials: "same-origin", ...options };
    if (options.json !== undefined) {
      init.method = init.method || "POST";
      init.headers = { "content-type": "application/json" };
      init.body = JSON.stringify(options.json);
    }
    let response;
    try { response = await fetch(path, init); } catch (e) {  // network: the studio is gone
      throw new Error("the studio cannot be reached (is `megasim studio` still running?)");
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (!response.ok) {
      const detail = data && data.detail ? data.detail : response.statusText;
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return data;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function fmt(v, digits = 2) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return v.toLocaleString("en-US");
      return v.toFixed(digits);
    }
    if (typeof v === "boolean") return v ? "yes" : "no";
    return String(v);
  }

  const time = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");
  function duration(s) {
    if (s === null || s === undefined) return "–";
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  }
  const badge = (state) => el("span", { class: `badge ${state}` }, state);

  // A table; columns: [{key, label, num, render(row), sortable}]; onSort(key) if sortable.
  function table(columns, rows, opts = {}) {
    if (!rows.length) return el("div", { class: "empty" }, opts.empty || "Nothing here yet.");
    const head = el("tr", {}, columns.map((c) => {
      const sorted = opts.sort === c.key;
      const cls = [c.sortable !== false && opts.onSort ? "sortable" : "",
        sorted ? "sorted" : "", sorted && opts.desc ? "desc" : ""].join(" ").trim();
      return el("th", { class: cls, "data-key": c.key,
        onclick: c.sortable !== false && opts.onSort ? () => opts.onSort(c.key) : null },
      c.label || c.key);
    }));
    const body = rows.map((r) => el("tr", {}, columns.map((c) =>
      el("td", { class: c.num ? "num" : "" }, c.render ? c.render(r) : fmt(r[c.key])))));
    return el("table", { class: "data" }, el("thead", {}, head), el("tbody", {}, body));
  }

  function nav(active) {
    const id = runId();
    const top = document.querySelector("header.top nav");
    const links = [["Runs", "/", "runs"]];
    if (id) {
      const base = `/runs/${encodeURIComponent(id)}`;
      links.push(["Dashboard", base, "run"], ["Cluster", `${base}/cluster`, "cluster"],
        ["Agents", `${base}/agents`, "agents"], ["Interview & survey", `${base}/ask`, "ask"],
        ["Report", `${base}/report`, "report"]);
      document.querySelector("header.top .run").textContent = id;
      document.title = `${id} · megasim studio`;
    }
    top.replaceChildren(...links.map(([label, href, key]) =>
      el("a", { href, class: key === active ? "active" : "" }, label)));
  }

  // Confirm an action in a dialog; resolves true if confirmed.
  function confirmAction(message) {
    return new Promise((resolve) => {
      const dialog = el("dialog", { id: "confirm" },
        el("p", {}, message),
        el("div", { class: "row" }, el("span", { class: "spacer" }),
          el("button", { onclick: () => { dialog.close(); resolve(false); } }, "Cancel"),
          el("button", { class: "primary", id: "confirm-ok",
            onclick: () => { dialog.close(); resolve(true); } }, "Confirm")));
      dialog.addEventListener("close", () => dialog.remove());
      document.body.append(dialog);
      dialog.showModal();
    });
  }

  function flash(target, message, isError = false) {
    target.replaceChildren(el("div", { class: isError ? "notice error" : "notice" }, message));
  }

  const plotLayout = (extra = {}) => ({
    margin: { l: 50, r: 16, t: 10, b: 40 }, font: { size: 12 },
    paper_bgcolor: "#fff", plot_bgcolor: "#fff", legend: { orientation: "h", y: -0.2 },
    ...extra,
  });
  const plotConfig = { displaylogo: false, responsive: true };

  return { runId, api, el, fmt, time, duration, badge, table, nav, confirmAction, flash,
    plotLayout, plotConfig };
})();
