// Sluice dashboard: one EventSource on /api/events; every message redraws
// its part of the page. No libraries: the charts are SVG built here.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const state = { topology: null, status: null, results: null };

function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function money(cents) {
  return (cents / 100).toLocaleString("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });
}

function num(n) {
  return Math.round(n).toLocaleString("en-US");
}

function rate(n) {
  return n >= 100 ? num(n) : n.toFixed(1);
}

// --- order analytics ---------------------------------------------------------

function drawMinutes(minutes) {
  const svg = document.getElementById("minute-chart");
  svg.replaceChildren();
  const W = 900, H = 260, L = 70, R = 60, T = 10, B = 30;
  const maxRev = Math.max(1, ...minutes.map(m => m.revenue_cents));
  const maxOrd = Math.max(1, ...minutes.map(m => m.orders));
  svg.dataset.points = minutes.length;
  svg.dataset.maxRevenueCents = minutes.length ? maxRev : 0;
  svg.dataset.maxOrders = minutes.length ? maxOrd : 0;
  for (let i = 0; i <= 4; i++) {
    const y = T + (H - T - B) * i / 4;
    svg.append(el("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
    svg.append(el("text", { x: L - 6, y: y + 4, "text-anchor": "end", class: "axis" }, money(maxRev * (4 - i) / 4)));
    svg.append(el("text", { x: W - R + 6, y: y + 4, class: "axis" }, num(maxOrd * (4 - i) / 4)));
  }
  if (!minutes.length) {
    svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "no results yet"));
    return;
  }
  const slot = (W - L - R) / minutes.length;
  const bw = Math.max(1, slot * 0.7);
  const pts = [];
  minutes.forEach((m, i) => {
    const h = (H - T - B) * m.revenue_cents / maxRev;
    const x = L + i * slot + (slot - bw) / 2;
    const bar = el("rect", { x, y: H - B - h, width: bw, height: h, class: "bar", "data-minute": m.minute, "data-value": m.revenue_cents });
    bar.append(el("title", {}, `${m.minute}: ${money(m.revenue_cents)}, ${num(m.orders)} orders`));
    svg.append(bar);
    pts.push(`${L + i * slot + slot / 2},${H - B - (H - T - B) * m.orders / maxOrd}`);
  });
  svg.append(el("polyline", { points: pts.join(" "), class: "orders-line" }));
  const step = Math.max(1, Math.ceil(minutes.length / 8));
  minutes.forEach((m, i) => {
    if (i % step === 0) svg.append(el("text", { x: L + i * slot + slot / 2, y: H - 10, "text-anchor": "middle", class: "axis" }, m.minute.slice(11)));
  });
}

function drawBars(id, rows, value, label) {
  const box = document.getElementById(id);
  box.replaceChildren();
  const max = Math.max(1, ...rows.map(value));
  for (const r of rows) {
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.name = r.name;
    row.dataset.value = value(r);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = r.name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = (100 * value(r) / max) + "%";
    track.append(fill);
    const n = document.createElement("span");
    n.className = "num";
    n.textContent = label(r);
    row.append(name, track, n);
    box.append(row);
  }
  if (!rows.length) box.textContent = "no results yet";
}

function drawResults(res) {
  drawMinutes(res.minutes);
  const rev = res.minutes.reduce((a, m) => a + m.revenue_cents, 0);
  const ord = res.minutes.reduce((a, m) => a + m.orders, 0);
  document.getElementById("total-revenue").textContent = money(rev);
  document.getElementById("total-orders").textContent = num(ord);
  drawBars("categories", res.categories, r => r.revenue_cents, r => money(r.revenue_cents));
  drawBars("cities", res.cities, r => r.revenue_cents, r => money(r.revenue_cents));
  drawBars("skus", res.top_skus.map(s => ({ name: s.sku, units: s.units })), r => r.units, r => num(r.units));
  document.getElementById("source").textContent = res.source ? "results: " + res.source : "no results store";
}

// --- pipeline ------------------------------------------------------------------

// layout puts each component in the column of its longest path from a
// source, so data flows left to right.
function layout(topo) {
  const depth = {};
  for (const c of topo.components) depth[c.id] = 0;
  for (let pass = 0; pass < topo.components.length; pass++) {
    let changed = false;
    for (const e of topo.edges) {
      if (depth[e.to] < depth[e.from] + 1) { depth[e.to] = depth[e.from] + 1; changed = true; }
    }
    if (!changed) break;
  }
  const cols = {};
  for (const c of topo.components) (cols[depth[c.id]] = cols[depth[c.id]] || []).push(c);
  const ncol = Object.keys(cols).length;
  const nrow = Math.max(1, ...Object.values(cols).map(c => c.length));
  // 120px nodes with 70px gaps: room for a rate label over every edge
  const W = Math.max(900, ncol * 190), H = Math.max(110, nrow * 80 + 30);
  const pos = {};
  for (const [d, cs] of Object.entries(cols)) {
    cs.forEach((c, i) => {
      pos[c.id] = { x: 10 + d * (W - 140) / Math.max(1, ncol - 1), y: (H / (cs.length + 1)) * (i + 1) - 25 };
    });
  }
  return { pos, W, H };
}

function drawTopology() {
  const topo = state.topology, st = state.status;
  if (!topo) return;
  const svg = document.getElementById("topology");
  svg.replaceChildren();
  const { pos, W, H } = layout(topo);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const defs = el("defs");
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" });
  marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a96a3" }));
  defs.append(marker);
  svg.append(defs);

  const comps = {}, chans = {};
  for (const c of (st && st.components) || []) comps[c.kind + "/" + c.name] = c;
  for (const c of (st && st.channels) || []) chans["channel/" + c.name] = c;
  const rates = (st && st.rates) || {};
  const NW = 120, NH = 50;
  for (const e of topo.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2;
    svg.append(el("path", { d: `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`, class: "edge" }));
    // a stage→channel edge carries what the stage wrote; channel→stage what it read
    const stageId = e.to.startsWith("channel/") ? e.from : e.to;
    const r = rates[stageId];
    const v = r ? (e.to.startsWith("channel/") ? r.out : r.in) : 0;
    svg.append(el("text", { x: (x1 + x2) / 2, y: Math.min(y1, y2) - 8, "text-anchor": "middle", class: "edge-label", "data-edge": e.from + ">" + e.to }, rate(v) + "/s"));
  }
  const problems = [];
  for (const c of topo.components) {
    const p = pos[c.id];
    const s = comps[c.id];
    const failed = s && s.state === "failed";
    if (failed) problems.push(`${c.kind} ${c.name} failed: ${s.last_error || "unknown error"}`);
    const g = el("g", { class: "node " + c.kind + (failed ? " failed" : ""), transform: `translate(${p.x},${p.y})`, "data-component": c.id });
    g.append(el("rect", { width: NW, height: NH, rx: 6 }));
    g.append(el("text", { x: 8, y: 18 }, c.name));
    let sub = c.kind;
    if (c.kind === "channel" && chans[c.id]) sub = "depth " + num(chans[c.id].depth_events);
    else if (s) sub = c.kind + " · " + (failed ? "failed" : s.state);
    g.append(el("text", { x: 8, y: 36, class: "sub" }, sub));
    if (s && s.last_error) g.append(el("title", {}, s.last_error));
    svg.append(g);
  }
  document.getElementById("problems").textContent = problems.join("; ");
}

function drawStatus(st) {
  const badge = document.getElementById("agent-state");
  const failed = st.components.some(c => c.state === "failed");
  const label = failed ? "failed" : st.state;
  badge.textContent = label + (st.reload_error ? " · reload rejected" : "");
  badge.className = "badge " + label;
  let inRate = 0;
  for (const c of st.components) {
    const r = st.rates[c.kind + "/" + c.name];
    if (r && c.kind === "source") inRate += r.out;
  }
  document.getElementById("events-rate").textContent = rate(inRate);
  document.getElementById("updated").textContent = "updated " + new Date(st.time).toLocaleTimeString();
}

// --- live updates ----------------------------------------------------------------

function connect() {
  const es = new EventSource("api/events");
  es.addEventListener("topology", m => { state.topology = JSON.parse(m.data); drawTopology(); });
  es.addEventListener("status", m => { state.status = JSON.parse(m.data); drawStatus(state.status); drawTopology(); });
  es.addEventListener("results", m => { state.results = JSON.parse(m.data); drawResults(state.results); });
  es.addEventListener("problem", m => {
    document.getElementById("problems").textContent = JSON.parse(m.data).error;
  });
  es.onerror = () => {
    const badge = document.getElementById("agent-state");
    badge.textContent = "disconnected (retrying)";
    badge.className = "badge disconnected";
  };
}

connect();
