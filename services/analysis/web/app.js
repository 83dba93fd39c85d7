// The dashboard's pages: fleet, agent, alerts, commands, configuration.
// Live through server-sent events (/api/events); charts with uPlot.
// Every value from the server is put in the page as text (never as HTML).
"use strict";

const ACTION = { "x-monitor-request": "1", "content-type": "application/json" };
const PAGE_SIZE = 50;
const RANGES = { "5m": 300, "1h": 3600, "24h": 86400, "7d": 7 * 86400 };
const COMMAND_TYPES = ["status", "ping", "collect", "reload", "plugins", "config", "metrics"];

const state = {
  rows: new Map(), // agent id -> row
  spark: new Map(), // agent id -> {metric: {t, v}}
  source: null,
  page: 0,
  sortKey: "agent_id",
  sortDir: 1,
  filter: "",
  view: null,
};

// ---------- helpers ----------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function unitOf(metric) {
  if (metric === "cpu" || metric === "memory" || metric === "disk") return "%";
  if (/^(disk|net) /.test(metric)) return "B/s";
  return "";
}

function fmt(metric, value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const unit = unitOf(metric);
  if (unit === "B/s") {
    const steps = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
    let v = Math.abs(value);
    let i = 0;
    while (v >= 1024 && i < steps.length - 1) {
      v /= 1024;
      i++;
    }
    return `${(Math.sign(value) * v).toFixed(v < 10 && i > 0 ? 1 : 0)} ${steps[i]}`;
  }
  const digits = Math.abs(value) < 10 ? 2 : 1;
  return `${value.toFixed(digits)}${unit ? " " + unit : ""}`;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "–";
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) {
    showLogin();
    throw new Error("the dashboard's token is needed");
  }
  return { ok: response.ok, status: response.status, body };
}

function showLogin() {
  const main = document.getElementById("main");
  if (main.querySelector("#login")) return;
  main.replaceChildren(
    el(
      "form",
      {
        id: "login",
        onsubmit: async (event) => {
          event.preventDefault();
          const token = main.querySelector("#token").value;
          const r = await fetch("/api/login", {
            method: "POST",
            headers: ACTION,
            body: JSON.stringify({ token }),
          });
          if (r.ok) location.reload();
          else main.querySelector("#login-error").textContent = "wrong token";
        },
      },
      el("h1", { text: "This dashboard needs its token" }),
      el("input", { id: "token", type: "password", placeholder: "analysis.http_token" }),
      el("button", { type: "submit", text: "Sign in" }),
      el("div", { id: "login-error", class: "message error" }),
    ),
  );
}

// ---------- live updates ----------

const listeners = new Set();

function connect(agent) {
  if (state.source) state.source.close();
  const url = agent ? `/api/events?agent=${encodeURIComponent(agent)}` : "/api/events";
  const source = new EventSource(url);
  state.source = source;
  const live = document.getElementById("live");
  source.onopen = () => {
    live.textContent = "live";
    live.className = "live on";
  };
  source.onerror = () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
  };
  for (const name of ["hello", "rows", "samples", "alert", "result", "command_done"]) {
    source.addEventListener(name, (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      if (name === "rows") { for (const row of data) state.rows.set(row.agent_id, row); }
      if (name === "samples") applySamples(data);
      for (const listener of [...listeners]) listener(name, data);
    });
  }
}

function applySamples(samples) {
  const horizon = Date.now() / 1000 - 300;
  for (const s of samples) {
    const row = state.rows.get(s.agent_id);
    if (row) {
      row.samples = (row.samples ?? 0) + 1;
      row.last_seen = Math.max(row.last_seen ?? 0, s.t);
      for (const [m, v] of Object.entries(s.metrics)) {
        row.metrics[m] = {
          value: v,
          t: s.t,
          stale_at: s.t + (row.stale_window_s ?? 67),
          stale: false,
        };
      }
    }
    const spark = state.spark.get(s.agent_id);
    if (spark) {
      for (const [m, v] of Object.entries(s.metrics)) {
        const line = spark[m] ?? (spark[m] = { t: [], v: [] });
        if (line.t.length && s.t <= line.t[line.t.length - 1]) continue;
        line.t.push(s.t);
        line.v.push(v);
        while (line.t.length > 1 && line.t[0] < horizon) {
          line.t.shift();
          line.v.shift();
        }
      }
    }
  }
}

function throttled(fn, ms) {
  let timer = null;
  return () => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
}

// ---------- fleet ----------

function sparkline(points) {
  const canvas = el("canvas", { width: 90, height: 22 });
  if (!points || points.t.length === 0) return canvas;
  const ctx = canvas.getContext("2d");
  const now = Date.now() / 1000;
  // The last 5 minutes, or since the first point when there is less.
  const t0 = Math.max(now - 300, Math.min(points.t[0], now - 30));
  const vs = points.v;
  let lo = Math.min(...vs);
  let hi = Math.max(...vs);
  if (hi === lo) {
    hi += 1;
    lo -= 1;
  }
  const x = (t) => ((t - t0) / (now - t0)) * 88 + 1;
  const y = (v) => 21 - ((v - lo) / (hi - lo)) * 20;
  ctx.strokeStyle = "#2563eb";
  ctx.lineWidth = 1.2;
  ctx.beginPath();
  for (let i = 0; i < points.t.length; i++) {
    const px = x(points.t[i]);
    const py = y(vs[i]);
    if (i === 0) ctx.moveTo(px, py);
    else {
      ctx.lineTo(px, y(vs[i - 1])); // a value holds until the next one
      ctx.lineTo(px, py);
    }
  }
  ctx.lineTo(x(now), y(vs[vs.length - 1]));
  ctx.stroke();
  return canvas;
}

function healthCell(row) {
  const seen = row.last_seen ? `last seen ${ago(row.last_seen)}` : "never seen";
  return el(
    "td",
    { class: "health-cell" },
    el("span", { class: `badge health ${row.health}`, text: row.health }),
    el("div", { class: "small seen", text: seen }),
  );
}

function metricNames(rows) {
  const names = new Set();
  for (const row of rows) for (const m of Object.keys(row.metrics)) names.add(m);
  const order = ["cpu", "memory", "disk read", "disk write", "net in", "net out", "disk"];
  return [...names].sort((a, b) => {
    const ia = order.indexOf(a);
    const ib = order.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
}

function sortValue(row, key) {
  if (key === "agent_id" || key === "hostname" || key === "health" || key === "version") {
    return String(row[key] ?? "");
  }
  if (key === "last_seen") return row.last_seen ?? 0;
  if (key === "alerts") return row.firing.length;
  return row.metrics[key]?.value ?? -Infinity;
}

function renderFleet(main) {
  const filter = el("input", {
    id: "filter",
    type: "search",
    placeholder: "filter: id, host, version, plugin, alert…",
    value: state.filter,
    oninput: (e) => {
      state.filter = e.target.value;
      state.page = 0;
      draw();
    },
  });
  const summary = el("span", { class: "small", id: "fleet-summary" });
  const table = el("table", { id: "fleet" });
  const pager = el("div", { class: "pager" });
  main.replaceChildren(
    el("h1", { text: "Fleet" }),
    el("div", { class: "toolbar" }, filter, summary),
    table,
    pager,
  );

  const loadSparks = async (ids) => {
    const missing = ids.filter((id) => !state.spark.has(id));
    if (missing.length === 0) return;
    const { ok, body } = await api(
      `/api/sparklines?agents=${missing.map(encodeURIComponent).join(",")}`,
    );
    if (!ok) return;
    for (const [id, lines] of Object.entries(body)) state.spark.set(id, lines);
    draw();
  };

  const draw = () => {
    const all = [...state.rows.values()];
    const needle = state.filter.trim().toLowerCase();
    const rows = needle === "" ? all : all.filter((r) =>
      [
        r.agent_id,
        r.hostname,
        r.version,
        r.health,
        r.status,
        ...r.plugins.map((p) => `${p.name} ${p.state}`),
        ...r.firing.map((a) => `alert ${a.metric}`),
        ...r.config_problems,
      ]
        .filter(Boolean).join(" ").toLowerCase().includes(needle)
    );
    const key = state.sortKey;
    rows.sort((a, b) => {
      const va = sortValue(a, key);
      const vb = sortValue(b, key);
      return (va < vb ? -1 : va > vb ? 1 : 0) * state.sortDir ||
        a.agent_id.localeCompare(b.agent_id);
    });
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    const visible = rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
    const metrics = metricNames(all);
    const alive = all.filter((r) => r.health === "alive").length;
    summary.textContent =
      `${all.length} agents, ${alive} alive, ${
        all.reduce((n, r) => n + r.firing.length, 0)
      } alerts firing` + (needle ? `; ${rows.length} match` : "");
    const head = (label, k) =>
      el("th", {
        "data-sort": k,
        onclick: () => {
          state.sortDir = state.sortKey === k ? -state.sortDir : 1;
          state.sortKey = k;
          draw();
        },
        text: label + (state.sortKey === k ? (state.sortDir > 0 ? " ▲" : " ▼") : ""),
      });
    table.replaceChildren(
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          head("Agent", "agent_id"),
          head("Health", "health"),
          head("Host", "hostname"),
          head("Version", "version"),
          metrics.map((m) => head(m, m)),
          head("Alerts", "alerts"),
          el("th", { text: "Plugins" }),
          el("th", { text: "Configuration" }),
        ),
      ),
      el(
        "tbody",
        {},
        visible.map((row) =>
          el(
            "tr",
            { "data-agent": row.agent_id, class: row.health },
            el(
              "td",
              {},
              el("a", { href: `#/agent/${encodeURIComponent(row.agent_id)}`, text: row.agent_id }),
            ),
            healthCell(row),
            el("td", { text: row.hostname }),
            el("td", { text: row.version ?? "–" }),
            metrics.map((m) => {
              const now = row.metrics[m];
              const stale = !now || row.health === "dead" ||
                Date.now() / 1000 >= now.stale_at;
              return el(
                "td",
                { class: `metric${stale ? " stale" : ""}`, "data-metric": m },
                el("span", { class: "value", text: now ? fmt(m, now.value) : "–" }),
                sparkline(state.spark.get(row.agent_id)?.[m]),
              );
            }),
            el(
              "td",
              {},
              row.firing.map((a) =>
                el("div", {
                  class: "badge firing",
                  text: `${a.metric} ${fmt(a.metric, a.value)} > ${fmt(a.metric, a.threshold)}`,
                })
              ),
            ),
            el(
              "td",
              {},
              row.plugins.map((p) =>
                el(
                  "div",
                  {},
                  el("span", { class: `badge ${p.state}`, text: p.state }),
                  " ",
                  p.name,
                  p.reason ? el("div", { class: "small", text: p.reason }) : null,
                )
              ),
            ),
            el(
              "td",
              {},
              row.config_problems.length
                ? row.config_problems.map((c) => el("div", { class: "issue", text: c }))
                : el("span", { class: "small", text: row.config_source ?? "" }),
            ),
          )
        ),
      ),
    );
    pager.replaceChildren(
      el("button", {
        text: "‹ previous",
        disabled: state.page === 0,
        onclick: () => {
          state.page--;
          draw();
        },
      }),
      el("span", { text: `page ${state.page + 1} of ${pages}` }),
      el("button", {
        text: "next ›",
        disabled: state.page >= pages - 1,
        onclick: () => {
          state.page++;
          draw();
        },
      }),
    );
    loadSparks(visible.map((r) => r.agent_id));
  };
  // New samples update the visible rows' values and sparklines in place, once a second; the
  // table is rebuilt when rows change (health, alerts, plugins) or the order may have changed.
  const redraw = throttled(draw, 1000);
  const touched = new Set();
  const updateValues = throttled(() => {
    const now = Date.now() / 1000;
    for (const id of touched) {
      const tr = table.querySelector(`tr[data-agent="${CSS.escape(id)}"]`);
      const row = state.rows.get(id);
      if (!tr || !row) continue;
      for (const td of tr.querySelectorAll("td.metric")) {
        const m = td.dataset.metric;
        const value = row.metrics[m];
        td.classList.toggle("stale", !value || row.health === "dead" || now >= value.stale_at);
        td.querySelector(".value").textContent = value ? fmt(m, value.value) : "–";
        td.querySelector("canvas")?.replaceWith(sparkline(state.spark.get(id)?.[m]));
      }
    }
    touched.clear();
  }, 1000);
  const FIXED_KEYS = ["agent_id", "health", "hostname", "version", "last_seen", "alerts"];
  const listener = (name, data) => {
    if (name === "rows") redraw();
    if (name !== "samples") return;
    const shown = new Set(
      [...table.querySelectorAll("th[data-sort]")].map((th) => th.dataset.sort),
    );
    const reorder = !FIXED_KEYS.includes(state.sortKey);
    if (reorder || data.some((s) => Object.keys(s.metrics).some((m) => !shown.has(m)))) {
      redraw();
      return;
    }
    for (const s of data) touched.add(s.agent_id);
    updateValues();
  };
  listeners.add(listener);
  const ticker = setInterval(draw, 5000); // ages ("last seen 5 s ago") move on
  api("/api/fleet").then(({ ok, body }) => {
    if (!ok) return;
    for (const row of body.agents) state.rows.set(row.agent_id, row);
    draw();
  });
  draw();
  return () => {
    listeners.delete(listener);
    clearInterval(ticker);
  };
}

// ---------- agent ----------

function renderAgent(main, agentId) {
  let range = "5m";
  const charts = new Map(); // metric -> {plot, data, element}
  let thresholds = {};
  const header = el("div", { id: "agent-header" });
  const buttons = el(
    "div",
    { class: "toolbar", id: "ranges" },
    Object.keys(RANGES).map((r) =>
      el("button", {
        "data-range": r,
        text: r === "5m" ? "live 5 min" : r,
        class: r === range ? "selected" : "",
        onclick: () => {
          range = r;
          for (const b of buttons.querySelectorAll("button")) {
            b.classList.toggle("selected", b.dataset.range === r);
          }
          load();
        },
      })
    ),
    el("a", { href: `#/config/${encodeURIComponent(agentId)}`, text: "configuration" }),
  );
  const grid = el("div", { class: "charts", id: "charts" });
  main.replaceChildren(el("h1", { text: `Agent ${agentId}` }), header, buttons, grid);

  const drawHeader = () => {
    const row = state.rows.get(agentId);
    if (!row) {
      header.replaceChildren(el("div", { class: "small", text: "no data from this agent yet" }));
      return;
    }
    header.replaceChildren(
      el(
        "div",
        { class: "toolbar" },
        el("span", { class: `badge health ${row.health}`, text: row.health }),
        el("span", { class: "small seen", text: `last seen ${ago(row.last_seen)}` }),
        el("span", { text: `host ${row.hostname}` }),
        el("span", { text: `version ${row.version ?? "–"}` }),
        el("span", { text: `status ${row.status ?? "–"}` }),
        row.plugins.map((p) =>
          el("span", {}, el("span", { class: `badge ${p.state}`, text: p.state }), " ", p.name)
        ),
        row.firing.map((a) =>
          el("span", { class: "badge firing", text: `ALERT ${a.metric} ${fmt(a.metric, a.value)}` })
        ),
      ),
      ...(row.reasons.length ? [el("div", { class: "issue", text: row.reasons.join("; ") })] : []),
    );
  };

  const chartFor = (metric) => {
    let chart = charts.get(metric);
    if (chart) return chart;
    const element = el(
      "div",
      { class: "chart", "data-metric": metric, "data-points": 0 },
      el("h3", { text: `${metric}${unitOf(metric) ? ` (${unitOf(metric)})` : ""}` }),
    );
    grid.append(element);
    const stepped = uPlot.paths.stepped({ align: 1 });
    const width = Math.max(480, element.clientWidth - 16 || 480);
    // Lines 1 px wide and without dashes: with 10,000 points per series (7 days of minutes),
    // wider or dashed strokes cost the canvas several times more.
    const line = (label, stroke) => ({
      label,
      stroke,
      width: 1,
      paths: stepped,
      spanGaps: true,
      value: (_u, v) => fmt(metric, v),
    });
    chart = { element, t: [], v: [], min: null, max: null, threshold: undefined };
    const plot = new uPlot(
      {
        width,
        height: 200,
        scales: {
          x: { time: true },
          y: {
            // The alert threshold stays in view.
            range: (_u, lo, hi) => {
              const th = chart.threshold;
              let a = lo ?? th ?? 0;
              let b = hi ?? th ?? 1;
              if (th !== undefined) {
                a = Math.min(a, th);
                b = Math.max(b, th);
              }
              if (a === b) {
                a -= 1;
                b += 1;
              }
              const pad = (b - a) * 0.05;
              return [a - pad, b + pad];
            },
          },
        },
        series: [{}, line(metric, "#2563eb"), line("min", "#93c5fd"), line("max", "#1e3a8a")],
        axes: [{}, { values: (_u, ticks) => ticks.map((v) => fmt(metric, v)), size: 80 }],
        hooks: {
          draw: [(u) => {
            const th = chart.threshold;
            if (th === undefined) return;
            const y = Math.round(u.valToPos(th, "y", true)) + 0.5;
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = "#dc2626";
            ctx.lineWidth = 1;
            ctx.setLineDash([6, 4]);
            ctx.beginPath();
            ctx.moveTo(u.bbox.left, y);
            ctx.lineTo(u.bbox.left + u.bbox.width, y);
            ctx.stroke();
            ctx.restore();
          }],
        },
      },
      [[], [], [], []],
      element,
    );
    chart.plot = plot;
    charts.set(metric, chart);
    return chart;
  };

  const paint = (metric) => {
    const chart = charts.get(metric);
    if (!chart) return;
    const now = Date.now() / 1000;
    const t = [...chart.t];
    const v = [...chart.v];
    const row = state.rows.get(agentId);
    // A value holds until the next one (duplicate filter): carried to now while not stale.
    if (
      t.length && range === "5m" && row && row.health !== "dead" &&
      now - t[t.length - 1] < (row.stale_window_s ?? 67)
    ) {
      t.push(now);
      v.push(v[v.length - 1]);
    }
    const threshold = thresholds[metric] ?? thresholds[metric.split(" ")[0]];
    if (chart.threshold !== threshold) {
      chart.threshold = threshold;
      chart.element.querySelector("h3").textContent = `${metric}${
        unitOf(metric) ? ` (${unitOf(metric)})` : ""
      }${threshold === undefined ? "" : ` · alert above ${fmt(metric, threshold)}`}`;
      chart.element.dataset.threshold = threshold === undefined ? "" : String(threshold);
    }
    const data = [
      t,
      v,
      chart.min
        ? [...chart.min, ...(t.length > chart.min.length ? [null] : [])]
        : t.map(() => null),
      chart.max
        ? [...chart.max, ...(t.length > chart.max.length ? [null] : [])]
        : t.map(() => null),
    ];
    const banded = chart.min !== null;
    if (chart.banded !== banded) {
      chart.banded = banded;
      chart.plot.setSeries(2, { show: banded });
      chart.plot.setSeries(3, { show: banded });
    }
    chart.plot.setData(data);
    const span = RANGES[range];
    chart.plot.setScale("x", {
      min: (range === "5m" ? now : (chart.to ?? now)) - span,
      max: range === "5m" ? now : (chart.to ?? now),
    });
    chart.element.dataset.points = String(chart.t.length);
    chart.element.dataset.first = chart.t.length ? String(chart.t[0]) : "";
    chart.element.dataset.drawnUntil = t.length ? String(t[t.length - 1]) : "";
    chart.element.dataset.last = chart.v.length ? String(chart.v[chart.v.length - 1]) : "";
  };

  const load = async () => {
    const info = await api(`/api/agents/${encodeURIComponent(agentId)}`);
    if (info.ok) {
      thresholds = info.body.thresholds ?? {};
      if (info.body.row) state.rows.set(agentId, info.body.row);
      drawHeader();
    }
    const to = Date.now() / 1000;
    const from = to - RANGES[range];
    const started = performance.now();
    const { ok, body } = await api(
      `/api/agents/${encodeURIComponent(agentId)}/history?from=${from}&to=${to}&points=${
        // About one point per pixel of the charts (minute rollups are merged beyond that).
        Math.max(200, Math.round(grid.clientWidth || 1000))}`,
    );
    if (!ok) return;
    const names = metricNames([{
      metrics: Object.fromEntries(Object.keys(body.series).map((m) => [m, 1])),
    }]);
    for (const metric of names) {
      const points = body.series[metric];
      const chart = chartFor(metric);
      chart.t = points.t;
      chart.v = points.v;
      chart.min = points.min ?? null;
      chart.max = points.max ?? null;
      chart.to = to;
      paint(metric);
    }
    grid.dataset.drawMs = String(Math.round(performance.now() - started));
    grid.dataset.range = range;
  };

  const listener = (name, data) => {
    if (name === "rows") drawHeader();
    if (name !== "samples" || range !== "5m") return;
    const fresh = new Set();
    for (const s of data) {
      if (s.agent_id !== agentId) continue;
      for (const [metric, value] of Object.entries(s.metrics)) {
        const chart = chartFor(metric);
        if (chart.t.length && s.t <= chart.t[chart.t.length - 1]) continue;
        chart.t.push(s.t);
        chart.v.push(value);
        fresh.add(metric);
      }
    }
    for (const metric of fresh) paint(metric);
  };
  listeners.add(listener);
  // The live window slides (and carried values reach "now") even without new samples.
  const ticker = setInterval(() => {
    if (range === "5m") { for (const metric of charts.keys()) paint(metric); }
    drawHeader();
  }, 1000);
  load();
  return () => {
    listeners.delete(listener);
    clearInterval(ticker);
    for (const chart of charts.values()) chart.plot.destroy();
  };
}

// ---------- alerts ----------

function renderAlerts(main) {
  const table = el("table", { id: "alerts" });
  main.replaceChildren(el("h1", { text: "Alerts" }), table);
  const load = async () => {
    const { ok, body } = await api("/api/alerts");
    if (!ok) return;
    table.replaceChildren(
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ["State", "Agent", "Metric", "Value", "Threshold", "Start", "End", "Value at end"].map((
            h,
          ) => el("th", { text: h })),
        ),
      ),
      el(
        "tbody",
        {},
        body.alerts.length === 0
          ? el(
            "tr",
            {},
            el("td", { colspan: 8, class: "small", text: "no alert in the last 7 days" }),
          )
          : null,
        body.alerts.map((a) =>
          el(
            "tr",
            { "data-agent": a.agent_id, "data-metric": a.metric },
            el(
              "td",
              {},
              el("span", {
                class: `badge ${a.end === null ? "firing" : "resolved"}`,
                text: a.end === null ? "firing" : "resolved",
              }),
            ),
            el(
              "td",
              {},
              el("a", { href: `#/agent/${encodeURIComponent(a.agent_id)}`, text: a.agent_id }),
            ),
            el("td", { text: a.metric }),
            el("td", { text: fmt(a.metric, a.value) }),
            el("td", { text: fmt(a.metric, a.threshold) }),
            el("td", { text: when(a.start) }),
            el("td", { text: a.end === null ? "–" : when(a.end) }),
            el("td", { text: a.end_value === null ? "–" : fmt(a.metric, a.end_value) }),
          )
        ),
      ),
    );
  };
  const listener = (name) => {
    if (name === "alert") setTimeout(load, 300);
  };
  listeners.add(listener);
  load();
  return () => listeners.delete(listener);
}

// ---------- commands ----------

function renderCommands(main) {
  const target = el("select", { id: "target" }, el("option", { value: "all", text: "all agents" }));
  for (const id of [...state.rows.keys()].sort()) {
    target.append(el("option", { value: id, text: id }));
  }
  const type = el("input", { id: "command-type", list: "command-types", value: "status" });
  const args = el("textarea", {
    id: "command-args",
    rows: 2,
    cols: 40,
    placeholder: '{"key": "value"} (optional)',
  });
  const message = el("div", { class: "message", id: "command-message" });
  const results = el("div", { id: "results" });
  const pending = new Set();
  const send = async (event) => {
    event.preventDefault();
    message.textContent = "";
    let parsed;
    if (args.value.trim() !== "") {
      try {
        parsed = JSON.parse(args.value);
      } catch (error) {
        message.className = "message error";
        message.textContent = `args: expected JSON (${error.message})`;
        return;
      }
    }
    const { ok, body } = await api("/api/commands", {
      method: "POST",
      headers: ACTION,
      body: JSON.stringify({ target: target.value, command_type: type.value.trim(), args: parsed }),
    });
    if (!ok) {
      message.className = "message error";
      message.textContent = body?.error ?? "refused";
      return;
    }
    pending.add(body.command_id);
    message.className = "message ok";
    message.textContent =
      `sent ${body.command_id} to ${body.target}; results appear below as they arrive`;
    results.prepend(
      el(
        "div",
        { class: "command", "data-command": body.command_id },
        el("h3", { text: `${type.value} → ${body.target} (${body.command_id})` }),
      ),
    );
  };
  main.replaceChildren(
    el("h1", { text: "Commands" }),
    el(
      "form",
      { id: "command-form", class: "toolbar", onsubmit: send },
      el("label", {}, "Target ", target),
      el("label", {}, "Command ", type),
      el("datalist", { id: "command-types" }, COMMAND_TYPES.map((c) => el("option", { value: c }))),
      el("label", {}, "Args ", args),
      el("button", { type: "submit", id: "send", text: "Send" }),
    ),
    message,
    results,
  );
  const listener = (name, data) => {
    if (name === "result" && pending.has(data.command_id)) {
      const box = results.querySelector(`[data-command="${CSS.escape(data.command_id)}"]`);
      const output = typeof data.output === "string"
        ? data.output
        : JSON.stringify(data.output, null, 2);
      box?.append(
        el(
          "div",
          { class: "result", "data-agent": data.agent_id, "data-status": data.status },
          el("span", { class: `badge ${data.status}`, text: data.status }),
          " ",
          el("strong", { text: data.agent_id }),
          " ",
          el("span", { class: "small", text: when(data.timestamp) }),
          el("pre", { text: output }),
        ),
      );
    }
    if (name === "command_done" && pending.has(data.command_id)) {
      const box = results.querySelector(`[data-command="${CSS.escape(data.command_id)}"]`);
      const missing = data.missing?.length ? `; no answer from ${data.missing.join(", ")}` : "";
      box?.append(
        el("div", {
          class: "small done",
          text: `done: ${data.ok?.length ?? 0} ok, ${data.errors?.length ?? 0} error(s)${missing}${
            data.timed_out ? " (timed out)" : ""
          }`,
        }),
      );
      pending.delete(data.command_id);
    }
  };
  listeners.add(listener);
  return () => listeners.delete(listener);
}

// ---------- configuration ----------

function fieldOf(path) {
  const match = /^([^.[]+)/.exec(path ?? "");
  return match ? match[1] : "";
}

function renderConfig(main, agentId) {
  const picker = el("select", {
    id: "config-agent",
    onchange: (e) => {
      location.hash = `#/config/${encodeURIComponent(e.target.value)}`;
    },
  });
  for (const id of ["default", ...[...state.rows.keys()].sort()]) {
    picker.append(el("option", { value: id, text: id, selected: id === agentId }));
  }
  const info = el("div", { class: "small", id: "config-source" });
  const form = el("form", { id: "config-form" });
  const message = el("div", { class: "message", id: "config-message" });
  const newKey = el("input", { id: "new-key", placeholder: "another key, e.g. heartbeat_ttl" });
  main.replaceChildren(
    el("h1", { text: "Configuration" }),
    el("div", { class: "toolbar" }, el("label", {}, "Agent ", picker), info),
    message,
    form,
  );
  const fields = new Map();
  const addField = (key, value) => {
    const area = el("textarea", {
      rows: Math.min(12, Math.max(1, JSON.stringify(value, null, 2).split("\n").length)),
      name: key,
    });
    area.value = JSON.stringify(value, null, 2);
    const issue = el("div", { class: "issue" });
    const box = el(
      "div",
      { class: "field", "data-field": key },
      el("label", { text: key }),
      area,
      issue,
    );
    fields.set(key, { area, issue, box });
    form.insertBefore(box, form.querySelector(".actions"));
  };
  const showIssues = (issues) => {
    for (const f of fields.values()) {
      f.issue.textContent = "";
      f.box.classList.remove("invalid");
    }
    const general = [];
    for (const issue of issues) {
      const text = `${
        issue.path ? issue.path + ": " : ""
      }expected ${issue.expected}, found ${issue.found}${issue.hint ? ` (${issue.hint})` : ""}`;
      const f = fields.get(fieldOf(issue.path));
      if (f) {
        f.box.classList.add("invalid");
        f.issue.append(el("div", { text }));
      } else general.push(text);
    }
    if (general.length) {
      message.className = "message error";
      message.replaceChildren(...general.map((g) => el("div", { text: g })));
    }
  };
  const save = async (event) => {
    event.preventDefault();
    message.textContent = "";
    const value = {};
    const local = [];
    for (const [key, f] of fields) {
      if (f.area.value.trim() === "") continue;
      try {
        value[key] = JSON.parse(f.area.value);
      } catch (error) {
        local.push({ path: key, expected: "JSON", found: error.message });
      }
    }
    if (local.length) {
      showIssues(local);
      message.className = "message error";
      message.textContent = "not saved: fix the fields marked in red";
      return;
    }
    const { ok, body } = await api(`/api/config/${encodeURIComponent(agentId)}`, {
      method: "PUT",
      headers: ACTION,
      body: JSON.stringify(value),
    });
    if (ok) {
      showIssues([]);
      message.className = "message ok";
      message.textContent =
        `saved: ${body.key} (revision ${body.revision}); the agent applies it without restarting`;
    } else {
      showIssues(body?.issues ?? []);
      message.className = "message error";
      message.prepend(
        el("div", {
          text: `not saved (nothing was written): ${
            body?.issues ? `${body.issues.length} issue(s)` : body?.error ?? "refused"
          }`,
        }),
      );
    }
  };
  form.addEventListener("submit", save);
  form.append(
    el(
      "div",
      { class: "actions toolbar" },
      newKey,
      el("button", {
        type: "button",
        text: "add key",
        onclick: () => {
          if (newKey.value.trim() && !fields.has(newKey.value.trim())) {
            addField(newKey.value.trim(), "");
          }
          newKey.value = "";
        },
      }),
      el("button", { type: "submit", id: "save", text: "Validate and save" }),
    ),
  );
  api(`/api/config/${encodeURIComponent(agentId)}`).then(({ ok, body }) => {
    if (!ok) {
      message.className = "message error";
      message.textContent = body?.error ?? "cannot read the configuration";
      return;
    }
    info.textContent = body.source === "own"
      ? `${body.key}, revision ${body.revision}`
      : body.source === "default"
      ? `no configuration of its own: ${body.key} applies (saving writes one for this agent)`
      : "no configuration in the store yet";
    const config = body.config && typeof body.config === "object"
      ? body.config
      : { interval: 5, metrics: ["cpu", "memory"], plugins: [] };
    for (const [key, value] of Object.entries(config)) addField(key, value);
    form.dataset.loaded = "1";
  });
  return () => {};
}

// ---------- routing ----------

let cleanup = () => {};
let connectedFor = undefined;

function route() {
  cleanup();
  const main = document.getElementById("main");
  const hash = location.hash || "#/fleet";
  const [, page, arg] = /^#\/([a-z]+)\/?(.*)$/.exec(hash) ?? [null, "fleet", ""];
  const id = arg ? decodeURIComponent(arg) : undefined;
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.dataset.nav === page);
  }
  const wanted = page === "agent" ? id : "";
  if (connectedFor !== wanted) {
    connect(page === "agent" ? id : undefined);
    connectedFor = wanted;
  }
  state.view = page;
  if (page === "agent" && id) cleanup = renderAgent(main, id);
  else if (page === "alerts") cleanup = renderAlerts(main);
  else if (page === "commands") cleanup = renderCommands(main);
  else if (page === "config") cleanup = renderConfig(main, id || "default");
  else cleanup = renderFleet(main);
}

addEventListener("hashchange", route);
// The fleet is known on every page (agent pickers, headers).
api("/api/fleet").then(({ ok, body }) => {
  if (ok) { for (const row of body.agents) state.rows.set(row.agent_id, row); }
}).catch(() => {});
route();
