// The console's shell: the token form, the navigation, the unread-alert count, and the
// router that mounts one view at a time (each view polls while it is shown).

import { state, api, every } from "/ui/dom.js";
import { runsView } from "/ui/runs.js";
import { runView } from "/ui/run.js";
import { alertsView, unreadCount } from "/ui/alerts.js";
import { policiesView } from "/ui/policies.js";

const main = document.getElementById("main");
let unmount = () => {};

/** `#/runs`, `#/alerts`, `#/policies`, `#/run/ID`; anything else shows the runs. */
function route() {
  const hash = location.hash || "#/runs";
  if (!hash.startsWith("#/")) return;
  unmount();
  main.replaceChildren();
  const [, view, ...rest] = hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  const views = { runs: runsView, alerts: alertsView, policies: policiesView };
  const mount = view === "run" && arg ? (el) => runView(el, arg) : views[view] || runsView;
  for (const a of document.querySelectorAll("nav a")) {
    const here = a.dataset.view === view || (view === "run" && a.dataset.view === "runs");
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  unmount = mount(main) || (() => {});
  document.title = `Lever · ${view === "run" ? arg : view || "runs"}`;
}

function tokenForm() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  const said = document.getElementById("token-state");
  const show = () => {
    said.textContent = state.token ? "token in use (this tab only)" : state.requireToken ? "no token: reads need one" : "no token";
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const t = input.value.trim();
    state.token = t || null;
    input.value = "";
    show();
    route();
  });
  document.getElementById("forget").addEventListener("click", () => {
    state.token = null;
    input.value = "";
    show();
    route();
  });
  show();
}

function unreadBadge() {
  const badge = document.getElementById("unread");
  every(1000, async () => {
    const n = await unreadCount();
    badge.hidden = n === 0;
    badge.textContent = n > 0 ? String(n) : "";
    badge.setAttribute("aria-label", `${n} unread alerts`);
  });
}

async function start() {
  try {
    const config = await api("/ui/config.json");
    state.requireToken = config.require_token;
  } catch {
    state.requireToken = true;
  }
  tokenForm();
  unreadBadge();
  window.addEventListener("hashchange", route);
  route();
}

start();
