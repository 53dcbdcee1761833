// Triage console: reads one live stream (GET /dashboard/api/stream, server-sent events read with fetch so that
// an admin key can travel in the Authorization header) and draws engines, GPUs, routing windows and decisions.
// No framework, no build step. Text from the server is only ever set with textContent, never parsed as HTML.
"use strict";

const KEY_STORE = "triage-console-key";
const MAX_ROWS = 100; // decisions kept in the table
const RETRY_MS = 1500;
const PALETTE = ["#4c8bd6", "#e0793a", "#3fa66b", "#a05fc4", "#d4b13f", "#5fb7c4", "#c45f7d", "#7d8a99"];
const TERM_ORDER = ["quality", "ttft_ms", "latency_ms", "neighbour_ms", "cost_usd", "in_flight"];

const app = {
  key: sessionStorage.getItem(KEY_STORE) || "",
  version: 0,
  rows: new Map(), // request id -> decision summary
  colours: new Map(), // model -> colour
  selected: null,
  controller: null,
  retry: null,
};

// -- small DOM helpers --------------------------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "title") node.title = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function byId(id) {
  return document.getElementById(id);
}

function fmt(value, digits, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toFixed(digits) + (unit || "");
}

function pct(value) {
  return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + "%";
}

function bar(share, hot) {
  const fill = el("span");
  fill.style.width = Math.max(0, Math.min(1, share || 0)) * 100 + "%";
  return el("div", { class: hot ? "bar hot" : "bar" }, fill);
}

function colour(model) {
  if (!app.colours.has(model)) app.colours.set(model, PALETTE[app.colours.size % PALETTE.length]);
  return app.colours.get(model);
}

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  if (app.key) headers.Authorization = "Bearer " + app.key;
  return headers;
}

// -- the live stream -----------------------------------------------------------------------------------------

function setConn(state, text) {
  const node = byId("conn");
  node.dataset.state = state;
  node.textContent = text || state;
}

function scheduleReconnect() {
  clearTimeout(app.retry);
  app.retry = setTimeout(connect, RETRY_MS);
}

async function connect() {
  if (app.controller) app.controller.abort();
  const controller = new AbortController();
  app.controller = controller;
  let response;
  try {
    response = await fetch("/dashboard/api/stream?since=" + app.version, {
      headers: authHeaders(),
      signal: controller.signal,
      cache: "no-store",
    });
  } catch (err) {
    if (controller.signal.aborted) return;
    setConn("offline", "offline, retrying");
    scheduleReconnect();
    return;
  }
  if (response.status === 401 || response.status === 403) {
    askForKey(await errorMessage(response));
    return;
  }
  if (!response.ok) {
    setConn("offline", "error " + response.status + ", retrying");
    scheduleReconnect();
    return;
  }
  setConn("live");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!handleEvent(block)) return;
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return;
  }
  setConn("offline", "reconnecting");
  scheduleReconnect();
}

function handleEvent(block) {
  let event = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return true;
  const payload = JSON.parse(data);
  if (event === "denied") {
    askForKey(payload.error ? payload.error.message : "access denied");
    return false;
  }
  if (event === "state") render(payload);
  return true;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error ? body.error.message : "HTTP " + response.status;
  } catch (err) {
    return "HTTP " + response.status;
  }
}

// -- the key ------------------------------------------------------------------------------------------------

function askForKey(message) {
  if (app.controller) app.controller.abort();
  setConn("denied", "key needed");
  byId("key-message").textContent = message;
  byId("key-form").hidden = false;
  byId("key-input").focus();
}

function useKey(event) {
  event.preventDefault();
  app.key = byId("key-input").value.trim();
  byId("key-input").value = "";
  if (app.key) sessionStorage.setItem(KEY_STORE, app.key);
  byId("key-form").hidden = true;
  setConn("connecting");
  connect();
}

function forgetKey() {
  app.key = "";
  sessionStorage.removeItem(KEY_STORE);
  byId("key-form").hidden = true;
  connect();
}

// -- drawing ------------------------------------------------------------------------------------------------

function render(state) {
  app.version = state.version;
  byId("policy").textContent = "policy " + state.policy.name + " · preset " + state.policy.preset;
  byId("uptime").textContent = "up " + Math.round(state.uptime_s) + " s";
  for (const engine of state.engines) colour(engine.model);
  renderEngines(state.engines);
  renderGpus(state.gpus);
  renderWindow(state.window);
  mergeDecisions(state.decisions);
  renderDecisions();
}

function renderEngines(engines) {
  const body = byId("engines").tBodies[0];
  body.replaceChildren(
    ...engines.map((e) => {
      const health = e.healthy
        ? el("span", {}, el("span", { class: "dot ok" }), "healthy")
        : el("span", { title: e.unhealthy_reason || "" }, el("span", { class: "dot bad" }),
          e.unhealthy_reason || "breaker " + e.breaker);
      const breaker = e.breaker === "closed" ? "closed" : e.breaker + (e.breaker_retry_in_s ? " · " + fmt(e.breaker_retry_in_s, 0, " s") : "");
      const swatch = el("span", { class: "dot" });
      swatch.style.background = colour(e.model);
      return el(
        "tr",
        { dataset: { model: e.model, healthy: String(e.healthy), breaker: e.breaker } },
        el("td", {}, swatch, e.model, e.remote ? el("span", { class: "muted" }, " remote") : null),
        el("td", {}, health),
        el("td", { class: "breaker-" + e.breaker }, breaker),
        el("td", { class: "num" }, e.in_flight + " / " + e.max_in_flight),
        el("td", { class: "num" }, e.stale ? "–" : e.running),
        el("td", { class: "num" }, e.stale ? "–" : e.waiting),
        el("td", {}, e.stale ? "–" : bar(e.kv_cache_usage, e.kv_cache_usage > 0.9), e.stale ? null : el("span", { class: "bar-label" }, pct(e.kv_cache_usage))),
        el("td", { class: "num" }, fmt(e.ttft_p50_ms, 0, " ms")),
        el("td", { class: "num" }, e.stale ? "–" : fmt(e.tokens_per_s, 0)),
        el("td", {}, e.gpus.join(", ") || "–"),
      );
    }),
  );
}

function renderGpus(gpus) {
  const box = byId("gpus");
  if (!gpus.length) {
    box.replaceChildren(el("p", { class: "muted" }, "no local GPU named in the config"));
    return;
  }
  box.replaceChildren(
    ...gpus.map((g) => {
      const memory = g.measured
        ? fmt(g.memory_used_bytes / 2 ** 30, 1) + " / " + fmt(g.memory_total_bytes / 2 ** 30, 1) + " GiB"
        : "no NVML reading";
      return el(
        "div",
        { class: "gpu", dataset: { gpu: g.gpu } },
        el("div", { class: "row" }, el("b", {}, "GPU " + g.gpu), el("span", { class: "muted" }, memory)),
        g.measured
          ? el("div", { class: "row" }, "utilisation", bar(g.utilization, g.utilization > 0.95), pct(g.utilization))
          : null,
        el("div", { class: "row muted" }, "engines: " + (g.engines.join(", ") || "none")),
      );
    }),
  );
}

function renderWindow(w) {
  byId("span").textContent = Math.round(w.span_s / 60) + " minutes";
  byId("kpi-requests").textContent = w.requests;
  byId("kpi-slo").textContent = pct(w.slo.attainment);
  byId("kpi-slo-label").textContent = "TTFT ≤ " + Math.round(w.slo.ttft_target_ms) + " ms (" + w.slo.counted + " counted)";
  byId("kpi-overflow").textContent = pct(w.overflow_share);
  byId("kpi-failed").textContent = w.outcomes.engine_failure || 0;

  const models = Object.keys(w.by_model);
  byId("share").replaceChildren(
    ...models.map((m) => {
      const part = el("span", { title: m + ": " + w.by_model[m] });
      part.style.width = (100 * w.by_model[m]) / Math.max(1, w.requests) + "%";
      part.style.background = colour(m);
      return part;
    }),
  );
  byId("legend").replaceChildren(
    ...models.map((m) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = colour(m);
      return el("span", {}, swatch, m + " " + pct(w.by_model[m] / Math.max(1, w.requests)));
    }),
  );
  renderTimeline(w);
  renderCategories(w.by_category, models);
}

function renderTimeline(w) {
  const slots = Math.round(w.span_s / w.bucket_s);
  const width = 300 / slots;
  let peak = 1;
  for (const b of w.timeline) peak = Math.max(peak, Object.values(b.by_model).reduce((a, n) => a + n, 0));
  const rects = [];
  for (const b of w.timeline) {
    const slot = slots - 1 - Math.floor(b.age_s / w.bucket_s);
    if (slot < 0) continue;
    let y = 60;
    for (const [model, n] of Object.entries(b.by_model)) {
      const h = (58 * n) / peak;
      y -= h;
      const rect = svg("rect", { x: slot * width + 0.5, y: y, width: width - 1, height: h, fill: colour(model) });
      rect.append(svg("title", {}));
      rect.firstChild.textContent = model + ": " + n;
      rects.push(rect);
    }
  }
  byId("timeline").replaceChildren(...rects);
}

function renderCategories(byCategory, models) {
  const table = byId("categories");
  table.tHead.replaceChildren(el("tr", {}, el("th", {}, "category"), ...models.map((m) => el("th", { class: "num" }, m))));
  table.tBodies[0].replaceChildren(
    ...Object.entries(byCategory).map(([category, counts]) => {
      const total = Object.values(counts).reduce((a, n) => a + n, 0);
      return el(
        "tr",
        {},
        el("td", {}, category),
        ...models.map((m) => el("td", { class: "num" }, counts[m] ? pct(counts[m] / total) : "")),
      );
    }),
  );
}

function mergeDecisions(decisions) {
  for (const d of decisions) app.rows.set(d.request_id, d);
  if (app.rows.size > MAX_ROWS) {
    const keep = [...app.rows.values()].sort((a, b) => b.seq - a.seq).slice(0, MAX_ROWS);
    app.rows = new Map(keep.map((d) => [d.request_id, d]));
  }
}

function renderDecisions() {
  const rows = [...app.rows.values()].sort((a, b) => b.seq - a.seq);
  byId("decisions").tBodies[0].replaceChildren(
    ...rows.map((d) => {
      const status = d.status.replace(" ", "-");
      const tr = el(
        "tr",
        { dataset: { requestId: d.request_id, status: status }, class: d.request_id === app.selected ? "selected" : null },
        el("td", {}, new Date(d.ts * 1000).toLocaleTimeString()),
        el("td", {}, el("code", {}, d.request_id)),
        el("td", {}, d.category),
        el("td", { class: "num" }, fmt(d.complexity, 2)),
        el("td", {}, d.model, d.model !== d.planned ? el("span", { class: "muted" }, " (planned " + d.planned + ")") : null),
        el("td", { class: "reason", title: d.reason }, d.reason),
        el("td", { class: "num" }, fmt(d.ttft_ms, 0, " ms")),
        el("td", { class: "num" }, fmt(d.latency_ms, 0, " ms")),
        el("td", { class: "status-" + status }, d.status),
        el("td", { class: "num" }, d.feedback === null ? "" : fmt(d.feedback, 2)),
      );
      tr.addEventListener("click", () => showDetail(d.request_id));
      return tr;
    }),
  );
}

async function showDetail(requestId) {
  app.selected = requestId;
  renderDecisions();
  const section = byId("detail-section");
  byId("detail-id").textContent = requestId;
  section.hidden = false;
  const box = byId("detail");
  const response = await fetch("/dashboard/api/decisions/" + encodeURIComponent(requestId), { headers: authHeaders() });
  if (!response.ok) {
    box.replaceChildren(el("p", { class: "error" }, await errorMessage(response)));
    return;
  }
  const d = await response.json();
  box.replaceChildren(
    el(
      "p",
      { class: "summary" },
      el("b", {}, d.model), " · " + d.category + " · complexity " + fmt(d.complexity, 2),
      d.preset ? " · preset " + d.preset : "", d.explored ? " · explored" : "", d.overflow ? " · overflow" : "",
      d.private.length ? " · kept local: " + d.private.join(", ") : "",
    ),
    el("p", { class: "reason" }, d.reason),
    d.candidates.length ? candidateTable(d.candidates, d.planned) : el("p", { class: "muted" }, "the client named the model: no candidates were weighed"),
  );
}

function candidateTable(candidates, chosen) {
  const extra = new Set();
  for (const c of candidates) for (const k of Object.keys(c)) extra.add(k);
  for (const k of ["model", "score", "eligible", "reason"]) extra.delete(k);
  const terms = [...TERM_ORDER.filter((k) => extra.has(k)), ...[...extra].filter((k) => !TERM_ORDER.includes(k))];
  return el(
    "table",
    { class: "candidates" },
    el("thead", {}, el("tr", {}, el("th", {}, "model"), el("th", { class: "num" }, "score"), ...terms.map((t) => el("th", { class: "num" }, t)), el("th", {}, "eligible / why not"))),
    el(
      "tbody",
      {},
      ...candidates.map((c) =>
        el(
          "tr",
          { class: !c.eligible ? "ineligible" : c.model === chosen ? "chosen" : null, dataset: { candidate: c.model } },
          el("td", {}, c.model),
          el("td", { class: "num" }, fmt(c.score, 3)),
          ...terms.map((t) => el("td", { class: "num" }, c[t] === undefined ? "" : t === "cost_usd" ? Number(c[t]).toExponential(2) : String(c[t]))),
          el("td", { class: "reason" }, c.eligible ? c.reason : "ruled out: " + c.reason),
        ),
      ),
    ),
  );
}

async function tryPrompt(event) {
  event.preventDefault();
  const box = byId("try-result");
  const prompt = byId("try-prompt").value.trim() || byId("try-prompt").placeholder;
  const body = { model: "auto", messages: [{ role: "user", content: prompt }] };
  const priority = byId("try-priority").value;
  if (priority) body.route = { priority: priority };
  box.replaceChildren(el("p", { class: "muted" }, "routing…"));
  const response = await fetch("/v1/route", {
    method: "POST",
    headers: authHeaders({ "content-type": "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    box.replaceChildren(el("p", { class: "error" }, await errorMessage(response)));
    return;
  }
  const d = await response.json();
  box.replaceChildren(
    el(
      "p",
      { class: "summary", dataset: { model: d.model } },
      el("b", {}, d.model), " · " + d.category + " · complexity " + fmt(d.complexity, 2),
      d.offers_choices ? " · answer options" : "",
      " · classify " + fmt(d.classify_ms, 2, " ms") + " · decide " + fmt(d.decide_ms, 2, " ms"),
      d.overflow ? " · overflow" : "",
    ),
    el("p", { class: "reason" }, d.reason),
    candidateTable(d.candidates, d.model),
  );
}

document.addEventListener("DOMContentLoaded", () => {
  byId("key-form").addEventListener("submit", useKey);
  byId("key-forget").addEventListener("click", forgetKey);
  byId("key-button").addEventListener("click", () => askForKey("Enter an admin API key (or forget the one in use)."));
  byId("detail-close").addEventListener("click", () => {
    app.selected = null;
    byId("detail-section").hidden = true;
    renderDecisions();
  });
  byId("try-form").addEventListener("submit", tryPrompt);
  connect();
});
