// The dashboard: reads the customer API with the key given once in the URL fragment (#key=..., never sent to
// the server in a URL) and kept in this tab's sessionStorage; draws with Chart.js. Suppressed values (null)
// are left out of sums and drawn as gaps.
"use strict";
const state = { key: null, charts: {} };
window.umbraCharts = state.charts;

function keyFromPage() {
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("key")) {
    sessionStorage.setItem("umbraKey", frag.get("key"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("umbraKey");
}

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + state.key } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.detail || r.statusText);
  return body;
}

function hhmm(t) { return new Date(t * 1000).toISOString().slice(11, 16); }
function sum(xs) { return xs.filter((x) => x !== null).reduce((a, b) => a + b, 0); }
function cell(tr, text) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }

function draw(id, config) {
  if (state.charts[id]) state.charts[id].destroy();
  state.charts[id] = new Chart(document.getElementById(id), { ...config, options: { animation: false, ...config.options } });
}

function byZone(rows) {
  const out = new Map();
  for (const r of rows) { if (!out.has(r.zone)) out.set(r.zone, []); out.get(r.zone).push(r); }
  return out;
}

function showCounts(rows) {
  const labels = [...new Set(rows.map((r) => r.window_start))].sort((a, b) => a - b);
  const datasets = [];
  const tbody = document.querySelector("#count-totals tbody");
  tbody.replaceChildren();
  for (const [line, rs] of byZone(rows)) {
    for (const dir of ["forward", "backward"]) {
      const at = new Map(rs.map((r) => [r.window_start, r[dir]]));
      datasets.push({ label: `${line} ${dir}`, data: labels.map((t) => (at.has(t) ? at.get(t) : null)) });
    }
    const tr = document.createElement("tr");
    cell(tr, line);
    cell(tr, sum(rs.map((r) => r.forward))).dataset.total = `${line}/forward`;
    cell(tr, sum(rs.map((r) => r.backward))).dataset.total = `${line}/backward`;
    tbody.appendChild(tr);
  }
  draw("counts", { type: "bar", data: { labels: labels.map(hhmm), datasets } });
}

function showOccupancy(rows) {
  const labels = [...new Set(rows.map((r) => r.window_start))].sort((a, b) => a - b);
  const tbody = document.querySelector("#occupancy-peaks tbody");
  tbody.replaceChildren();
  const datasets = [];
  for (const [zone, rs] of byZone(rows)) {
    const at = new Map(rs.map((r) => [r.window_start, r.peak_present]));
    datasets.push({ label: zone, data: labels.map((t) => (at.has(t) ? at.get(t) : null)), spanGaps: false });
    const tr = document.createElement("tr");
    cell(tr, zone);
    cell(tr, Math.max(...rs.map((r) => r.peak_present).filter((x) => x !== null))).dataset.peak = zone;
    cell(tr, sum(rs.map((r) => r.visitors))).dataset.visitors = zone;
    tbody.appendChild(tr);
  }
  draw("occupancy", { type: "line", data: { labels: labels.map(hhmm), datasets } });
}

// The zone plan's outlines: each zone's polygon (closed) and each count line, in the heatmap's ground metres.
function outlines(plan) {
  const out = [];
  for (const z of plan.zones) {
    const pts = [...z.polygon, z.polygon[0]].map(([x, y]) => ({ x, y }));
    out.push({ type: "scatter", label: `zone ${z.name}`, data: pts, showLine: true, fill: false, pointRadius: 0, borderWidth: 2 });
  }
  for (const l of plan.lines) {
    out.push({ type: "scatter", label: `line ${l.name}`, data: [l.a, l.b].map(([x, y]) => ({ x, y })), showLine: true,
      fill: false, pointRadius: 0, borderWidth: 2, borderDash: [6, 4] });
  }
  return out;
}

function showHeatmap(rows, plan) {
  const cells = new Map();
  for (const r of rows) {
    const prev = cells.get(r.zone) || { s: 0, m: r.cell_m };
    cells.set(r.zone, { s: prev.s + (r.people_seconds || 0), m: r.cell_m });
  }
  const peak = Math.max(1, ...[...cells.values()].map((c) => c.s));
  const data = [...cells].map(([xy, c]) => {
    const [x, y] = xy.split(",").map(Number);  // cell (x, y) covers [x m, (x + 1) m): drawn at its centre
    return { x: (x + 0.5) * c.m, y: (y + 0.5) * c.m, r: 3 + 17 * Math.sqrt(c.s / peak), s: c.s };
  });
  draw("heatmap", { type: "bubble", data: { datasets: [{ label: "people-seconds", data }, ...outlines(plan)] },
    options: { scales: { x: { type: "linear", title: { display: true, text: "m" } },
      y: { type: "linear", reverse: true, title: { display: true, text: "m" } } } } });
}

function showFlows(rows) {
  const pairs = new Map();
  for (const r of rows) { const k = `${r.from_zone} → ${r.to_zone}`; pairs.set(k, (pairs.get(k) || 0) + r.people); }
  const tbody = document.querySelector("#flow-totals tbody");
  tbody.replaceChildren();
  for (const [k, v] of pairs) {
    const tr = document.createElement("tr");
    const [a, b] = k.split(" → ");
    cell(tr, a); cell(tr, b); cell(tr, v.toFixed(1)).dataset.flow = k;
    tbody.appendChild(tr);
  }
  draw("flows", { type: "bar", data: { labels: [...pairs.keys()], datasets: [{ label: "people", data: [...pairs.values()] }] },
    options: { indexAxis: "y" } });
}

// The day's running crossings per line and direction (flow_totals): the combined estimate as a line, a band of
// one standard error either side of it, and the running totals as released as points. A point sits at its
// step's end (the total runs from the day's start to there); null (withheld, or no estimate yet) is a gap.
const DIRECTIONS = { "+": "forward", "-": "backward" };
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

function showRunning(rows) {
  const ends = [...new Set(rows.map((r) => r.window_start + r.window_s))].sort((a, b) => a - b);
  const series = new Map();
  for (const r of rows) {
    const k = `${r.zone} ${DIRECTIONS[r.direction]}`;
    if (!series.has(k)) series.set(k, { line: r.zone, dir: r.direction, rows: [] });
    series.get(k).rows.push(r);
  }
  const tbody = document.querySelector("#running-totals tbody");
  tbody.replaceChildren();
  const datasets = [];
  let i = 0;
  for (const [k, s] of series) {
    const colour = PALETTE[i++ % PALETTE.length];
    const at = new Map(s.rows.map((r) => [r.window_start + r.window_s, r]));
    const pick = (f) => ends.map((t) => (at.has(t) ? f(at.get(t)) : null));
    const bound = (sign) => (r) => (r.combined === null ? null : r.combined + sign * r.stderr);
    const line = { borderColor: colour, backgroundColor: colour, pointRadius: 0, borderWidth: 1.5, spanGaps: false };
    datasets.push({ ...line, label: `${k} estimate`, data: pick((r) => r.combined) });
    datasets.push({ ...line, label: `${k} − 1 s.e.`, data: pick(bound(-1)), borderWidth: 0, fill: false, band: true });
    datasets.push({ ...line, label: `${k} + 1 s.e.`, data: pick(bound(1)), borderWidth: 0, band: true,
      fill: "-1", backgroundColor: colour + "33" });
    datasets.push({ ...line, label: `${k} released`, data: pick((r) => r.released), showLine: false, pointRadius: 1.5 });
    const last = [...s.rows].reverse().find((r) => r.combined !== null);
    const tr = document.createElement("tr");
    cell(tr, s.line); cell(tr, DIRECTIONS[s.dir]);
    cell(tr, last ? hhmm(last.window_start + last.window_s) : "–");
    cell(tr, last ? last.combined.toFixed(1) : "–").dataset.running = `${s.line}/${s.dir}`;
    cell(tr, last ? last.stderr.toFixed(1) : "–").dataset.stderr = `${s.line}/${s.dir}`;
    tbody.appendChild(tr);
  }
  draw("running", { type: "line", data: { labels: ends.map(hhmm), datasets },
    options: { plugins: { legend: { labels: { filter: (item, data) => !data.datasets[item.datasetIndex].band } } },
      scales: { y: { title: { display: true, text: "people since 00:00 UTC" } } } } });
}

async function load() {
  const sensor = document.getElementById("sensor").value;
  const day = document.getElementById("day").value;
  const from = Date.parse(day + "T00:00:00Z") / 1000;
  const q = `from=${from}&to=${from + 86400}`;
  document.body.dataset.ready = "0";
  try {
    const base = `/api/v1/sensors/${encodeURIComponent(sensor)}`;
    const [c, o, h, f] = await Promise.all(["counts", "occupancy", "heatmap", "flows"].map((m) => api(`${base}/${m}?${q}`)));
    const plan = await api(`${base}/zones`);
    const running = await api(`${base}/flow_totals?day=${from}`);
    showCounts(c.rows); showRunning(running.rows); showOccupancy(o.rows); showHeatmap(h.rows, plan); showFlows(f.rows);
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = e.message;
  }
  document.body.dataset.ready = "1";
}

async function start() {
  state.key = keyFromPage();
  if (!state.key) { document.getElementById("error").textContent = "open this page with #key=<your API key>"; return; }
  const params = new URLSearchParams(location.search);
  const sel = document.getElementById("sensor");
  const { sensors } = await api("/api/v1/sensors");
  for (const s of sensors) { const o = document.createElement("option"); o.value = s.id; o.textContent = s.name; sel.appendChild(o); }
  if (params.get("sensor")) sel.value = params.get("sensor");
  document.getElementById("day").value = params.get("day") || new Date().toISOString().slice(0, 10);
  sel.onchange = load; document.getElementById("day").onchange = load;
  await load();
}
start().catch((e) => { document.getElementById("error").textContent = e.message; document.body.dataset.ready = "1"; });
