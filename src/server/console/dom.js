// Helpers every view shares: building elements (text always goes in as text, never as
// HTML: run ids, labels and reasons come from agents), calling the server with the token
// held in this tab's memory, polling, and printing values in their units.

/** What the page knows: the token lives here and nowhere else (no storage, no cookie). */
export const state = { token: null, requireToken: true };

/** An element with attributes (`on…` are listeners) and children (strings become text). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  return add(el, children);
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  add(el, children);
}

/** Appends children (nested arrays flattened; null, undefined and false left out). */
function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/**
 * Sets an element's text only when it changes: a live region (`role="status"`) is read out
 * at each change, and a view that refreshes every second must not repeat itself.
 */
export function say(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** When a view last heard from the server (outside any live region). */
export function stamp(el) {
  el.textContent = `updated ${new Date().toLocaleTimeString()}`;
}

/** A failed request: its HTTP status (0: no answer) and the server's `error`. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * Calls the server: JSON in and out, the token as a bearer header. `text: true` answers
 * the body as text. An answer that is not 2xx throws an ApiError; `decision: true` returns
 * a judged answer with a 4xx status too (a rejected override carries its decision).
 */
export async function api(path, { method = "GET", body, text = false, decision = false } = {}) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let answer;
  try {
    answer = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    throw new ApiError(0, `the server did not answer (${e.message})`);
  }
  const raw = await answer.text();
  if (text && answer.ok) return raw;
  let json = null;
  try {
    json = JSON.parse(raw);
  } catch {
    json = null;
  }
  if (answer.ok || (decision && json && json.action)) return json;
  throw new ApiError(answer.status, (json && json.error) || raw || answer.statusText);
}

/** A message for a failed read: a missing or weak token says what to paste. */
export function readError(e) {
  if (e.status === 401) return "Paste a token with the read role (top right) to see this.";
  if (e.status === 403) return `This token may not read: ${e.message}`;
  return `Could not load: ${e.message}`;
}

/** Calls `fn` now and every `ms` after it finishes, until the returned stop is called. */
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** A value as a policy writes it: `$4.50`, `12,000 tokens`; `—` for none yet. */
export function amount(unit, v) {
  if (v === null || v === undefined) return "—";
  const n = Number(v);
  if (unit === "usd") return /^\d+$/.test(v) ? `$${v}.00` : /^\d+\.\d$/.test(v) ? `$${v}0` : `$${v}`;
  if (unit === "duration") return duration(v);
  if (unit === "tokens") return `${Number.isFinite(n) ? n.toLocaleString("en-US") : v} tokens`;
  return String(v);
}

/** A duration as the server writes it (`"1800000ms"`) in the largest whole unit (`30m`). */
export function duration(v) {
  const m = /^(\d+)ms$/.exec(String(v));
  if (!m) return String(v);
  const ms = Number(m[1]);
  for (const [unit, size] of [["d", 86400000], ["h", 3600000], ["m", 60000], ["s", 1000]]) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** The number in a value's text (`"86400000ms"` is 86400000), or null. */
export function num(v) {
  if (v === null || v === undefined) return null;
  const n = parseFloat(v);
  return Number.isFinite(n) ? n : null;
}

/** A limit as a bar: observed over effective, the NEAR marker, the zone in colour and words. */
export function bar(l) {
  const observed = num(l.observed);
  const effective = num(l.effective_value);
  const near = num(l.near_value);
  const ratio = effective > 0 && observed !== null ? observed / effective : 0;
  const percent = Math.round(ratio * 100);
  const zone = l.shadowed ? "shadowed" : l.zone || "below";
  const words = `${amount(l.unit, l.observed)} of ${amount(l.unit, l.effective_value)} (${percent}%)`;
  const fillEl = h("span", { class: "fill" });
  fillEl.style.width = `${Math.min(ratio, 1) * 100}%`;
  const meter = h(
    "div",
    {
      class: `bar zone-${zone}`,
      role: "meter",
      "aria-valuemin": 0,
      "aria-valuemax": effective ?? 0,
      "aria-valuenow": observed ?? 0,
      "aria-valuetext": `${words}, ${zone}`,
      "aria-label": `${l.policy} ${l.limit}`,
    },
    fillEl,
  );
  if (near !== null && effective > 0) {
    const mark = h("span", { class: "near-mark", title: `NEAR at ${amount(l.unit, l.near_value)}` });
    mark.style.left = `${Math.min(near / effective, 1) * 100}%`;
    meter.append(mark);
  }
  const raised = l.effective_value !== l.limit_value ? ` (raised from ${amount(l.unit, l.limit_value)})` : "";
  return h(
    "div",
    { class: "limit", "data-policy": l.policy, "data-limit": l.limit, "data-zone": zone },
    h("div", { class: "limit-head" },
      h("span", { class: "limit-name" }, `${l.policy} · ${l.limit}`),
      h("span", { class: `zone-word zone-${zone}` }, zone.toUpperCase())),
    meter,
    h("div", { class: "limit-words" }, words, raised,
      near !== null ? ` · NEAR at ${amount(l.unit, l.near_value)}` : ""),
  );
}

/** A run state as a badge (colour and words). */
export function stateBadge(s) {
  return h("span", { class: `badge state-${s}` }, s);
}

/** A link to a run's page. */
export function runLink(id) {
  return h("a", { href: `#/run/${encodeURIComponent(id)}` }, id);
}

/** The current time as an event timestamp (whole seconds, UTC). */
export function now() {
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}
