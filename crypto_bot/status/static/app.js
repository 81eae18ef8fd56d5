// The status page: reads /api/status every few seconds and draws it. No framework, nothing fetched
// from anywhere but this bot (the server's Content-Security-Policy enforces that).
"use strict";

const REFRESH_MS = 5000;
const MIB = 1024 * 1024;
const LEVELS = ["GC", "PRESSURE", "CRITICAL"];
const SVG = "http://www.w3.org/2000/svg";
const CHART = { width: 900, height: 320, left: 72, right: 16, top: 12, bottom: 28 };
const KIB = 1024;
let logScale = null; // null: chosen from the data (log when the limit dwarfs the lines)

function $(id) { return document.getElementById(id); }

function text(value, digits) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return value.toFixed(digits === undefined ? 2 : digits);
  return String(value);
}

function mib(bytes) { return bytes === null || bytes === undefined ? "–" : (bytes / MIB).toFixed(1); }

function clock(seconds) { return seconds ? new Date(seconds * 1000).toLocaleTimeString() : "–"; }

function duration(seconds) {
  const s = Math.floor(seconds || 0);
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m ${s % 60}s`;
}

function fillTable(id, rows) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...rows.map((cells) => {
    const row = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      td.textContent = cell;
      row.append(td);
    }
    return row;
  }));
}

function element(name, attributes, content) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (content !== undefined) node.textContent = content;
  return node;
}

function chartLimit(memory) {
  const limits = memory.limits || {};
  const limiting = limits.limiting && limits[limits.limiting];
  if (limiting && limiting.limit_bytes) return limiting.limit_bytes;
  return memory.limit_bytes || null;
}

function drawChart(status) {
  const svg = $("chart");
  const history = status.history;
  const memory = status.memory;
  const times = history.time;
  const series = [
    ["rss", "RSS", history.rss_bytes],
    ["working_set", "working set", history.working_set_bytes],
    ["cache", "cache bytes", history.cache_bytes],
  ];
  if (!times.length) {
    svg.replaceChildren(element("text", { x: CHART.width / 2, y: CHART.height / 2, "text-anchor": "middle" }, "waiting for the first cycle"));
    svg.dataset.points = 0;
    $("legend").replaceChildren();
    return;
  }
  const limit = chartLimit(memory);
  const thresholds = (memory.pressure && memory.pressure.thresholds) || {};
  const values = series.flatMap(([, , column]) => column.filter((v) => v !== null && v > 0));
  const dataMax = values.length ? Math.max(...values) : 1;
  const useLog = logScale === null ? Boolean(limit && limit > 8 * dataMax) : logScale;
  $("scale").textContent = useLog ? "linear scale" : "log scale";
  const top = Math.max(dataMax, limit || 0) * 1.05;
  const bottom = useLog ? Math.max(64 * KIB, Math.min(...values, top) / 2) : 0;
  const plotWidth = CHART.width - CHART.left - CHART.right;
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  const t0 = times[0];
  const t1 = times.length > 1 ? times[times.length - 1] : t0 + 1;
  const x = (t) => CHART.left + ((t - t0) / (t1 - t0)) * plotWidth;
  const y = (v) => {
    const ratio = useLog
      ? (Math.log(Math.max(v, bottom)) - Math.log(bottom)) / (Math.log(top) - Math.log(bottom))
      : v / top;
    return CHART.top + plotHeight * (1 - Math.min(1, Math.max(0, ratio)));
  };
  const nodes = [];
  // Pressure levels shaded: one band per run of samples at the same level above NORMAL.
  for (let i = 0; i < times.length; i++) {
    const level = history.level[i];
    if (!LEVELS.includes(level)) continue;
    let j = i;
    while (j + 1 < times.length && history.level[j + 1] === level) j++;
    const left = x(times[Math.max(i - 1, 0)]);
    const right = x(times[j]);
    nodes.push(element("rect", {
      class: `shade shade-${level}`, "data-level": level, x: left, y: CHART.top,
      width: Math.max(right - left, 2), height: plotHeight,
    }));
    i = j;
  }
  nodes.push(element("line", { class: "axis", x1: CHART.left, y1: CHART.top + plotHeight, x2: CHART.left + plotWidth, y2: CHART.top + plotHeight }));
  nodes.push(element("line", { class: "axis", x1: CHART.left, y1: CHART.top, x2: CHART.left, y2: CHART.top + plotHeight }));
  const ticks = useLog ? [bottom, Math.sqrt(bottom * top), top] : [0, top / 4, top / 2, (3 * top) / 4, top];
  for (const tick of ticks) {
    nodes.push(element("text", { x: CHART.left - 6, y: y(tick) + 4, "text-anchor": "end" }, `${(tick / MIB).toFixed(tick < 10 * MIB ? 1 : 0)} MiB`));
  }
  for (const [t, anchor] of [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]]) {
    nodes.push(element("text", { x: x(t), y: CHART.height - 8, "text-anchor": anchor }, clock(t)));
  }
  const legend = [];
  if (limit) {
    nodes.push(element("line", { class: "limit", "data-line": "limit", x1: CHART.left, x2: CHART.left + plotWidth, y1: y(limit), y2: y(limit) }));
    legend.push(["limit", `limit ${mib(limit)} MiB`]);
    for (const level of LEVELS) {
      if (thresholds[level] === undefined) continue;
      const value = thresholds[level] * limit;
      nodes.push(element("line", {
        class: `threshold threshold-${level}`, "data-line": `threshold-${level}`,
        x1: CHART.left, x2: CHART.left + plotWidth, y1: y(value), y2: y(value),
      }));
      legend.push([`threshold threshold-${level}`, `${level} ${Math.round(thresholds[level] * 100)}%`]);
    }
  }
  for (const [name, title, column] of series) {
    const points = [];
    column.forEach((value, i) => { if (value !== null) points.push(`${x(times[i]).toFixed(1)},${y(value).toFixed(1)}`); });
    if (!points.length) continue;
    const line = element("polyline", { class: `series ${name}`, "data-series": name, "data-points": points.length, points: points.join(" ") });
    line.append(element("title", {}, title));
    nodes.push(line);
    legend.push([`series ${name}`, title]);
  }
  svg.replaceChildren(...nodes);
  $("legend").replaceChildren(...legend.map(([cls, title]) => {
    const item = document.createElement("span");
    const swatch = document.createElementNS(SVG, "svg");
    swatch.setAttribute("viewBox", "0 0 24 8");
    swatch.append(element("line", { class: cls, x1: 0, y1: 4, x2: 24, y2: 4 }));
    item.append(swatch, ` ${title}`);
    return item;
  }));
  svg.dataset.points = times.length;
}

function render(status) {
  const bot = status.bot;
  const memory = status.memory;
  const trading = status.trading;
  const level = memory.pressure_level || "UNMANAGED";
  $("level").textContent = level;
  $("level").className = `badge level-${level}`;
  const health = status.health;
  $("health").textContent = health.status === "ok" ? "healthy" : "unhealthy";
  $("health").className = `badge health-${health.status}`;
  $("health-reasons").textContent = health.reasons.join("; ");
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  $("cycle").textContent = text(bot.cycle, 0);
  $("equity").textContent = text(trading.equity);
  $("open").textContent = trading.open_positions ? trading.open_positions.length : "–";
  $("trades").textContent = text(trading.closed_trades, 0);
  $("rss").textContent = `${mib(memory.reading && memory.reading.rss_bytes)} MiB`;
  $("usage").textContent = memory.usage_ratio === null || memory.usage_ratio === undefined ? "–" : `${(memory.usage_ratio * 100).toFixed(1)}%`;
  $("recycles").textContent = text(bot.recycles, 0);
  $("uptime").textContent = duration(bot.uptime_seconds);
  fillTable("caches", Object.entries(memory.caches || {}).map(([name, c]) => [
    name, c.entries, mib(c.total_bytes), `${(c.hit_rate * 100).toFixed(0)}%`,
    Object.entries(c.evictions).filter(([, n]) => n).map(([cause, n]) => `${cause} ${n}`).join(", ") || "none",
  ]));
  fillTable("models", Object.entries(memory.models || {}).map(([name, m]) => [name, m.loaded ? "yes" : "no", mib(m.size_bytes), m.pinned ? "yes" : "no"]));
  fillTable("positions", (trading.open_positions || []).map((p) => [
    p.symbol, p.side, text(p.quantity, 6), text(p.entry_price, 4), text(p.mark_price, 4), text(p.unrealised_pnl),
  ]));
  fillTable("fills", (trading.recent_fills || []).map((f) => [
    clock(f.at_ms / 1000), f.action, f.symbol, f.side, text(f.quantity, 6), text(f.price, 4), text(f.pnl),
  ]));
  fillTable("alerts", (status.notifications.recent || []).filter((e) => e.event !== "fill").map((e) => [clock(e.time), e.event, e.message]));
  const market = trading.market || {};
  fillTable("exchange", [
    ["source", text(market.source)],
    ["REST calls last cycle", text(market.rest_calls_last_cycle, 0)],
    ["errors last cycle", text(market.errors_last_cycle, 0)],
    ["down", market.exchange_down || "no"],
  ]);
  drawChart(status);
}

function token() { return sessionStorage.getItem("crypto-bot-token"); }

async function refresh() {
  const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
  try {
    const response = await fetch("/api/status", { headers, cache: "no-store" });
    if (response.status === 401) {
      $("token-form").hidden = false;
      document.body.dataset.state = "token";
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const status = await response.json();
    render(status);
    $("error").hidden = true;
    document.body.dataset.state = "ready";
  } catch (error) {
    $("error").textContent = `cannot read the bot's status: ${error.message}`;
    $("error").hidden = false;
    document.body.dataset.state = "error";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("crypto-bot-token", $("token").value);
    $("token-form").hidden = true;
  });
  $("scale").addEventListener("click", () => {
    logScale = $("scale").textContent === "log scale";
  });
  refresh();
});
