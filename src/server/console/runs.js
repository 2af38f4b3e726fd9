// The Runs view: live runs with their tenant, agent, key, state and a bar per bound
// limit, refreshed every second; filters by tenant, agent and state; any run (ended ones
// too) opened by its id.

import { h, fill, say, stamp, api, every, bar, stateBadge, runLink, readError } from "/ui/dom.js";

const STATES = ["any", "running", "paused", "stopped", "killed"];

export function runsView(main) {
  const tenant = h("input", { id: "f-tenant", type: "search", placeholder: "any" });
  const agent = h("input", { id: "f-agent", type: "search", placeholder: "any" });
  const stateSel = h("select", { id: "f-state" }, STATES.map((s) => h("option", { value: s }, s)));
  const openId = h("input", { id: "open-id", type: "search", placeholder: "run id", required: true });
  const body = h("tbody");
  const note = h("span", { role: "status" });
  const when = h("span", { class: "stamp" });
  const open = (e) => {
    e.preventDefault();
    const id = openId.value.trim();
    if (id) location.hash = `#/run/${encodeURIComponent(id)}`;
  };
  let last = null;
  const draw = () => last && fill(body, rows(last, tenant.value, agent.value, stateSel.value));
  for (const el of [tenant, agent, stateSel]) el.addEventListener("input", draw);
  main.append(
    h("h1", {}, "Runs"),
    h("div", { class: "toolbar" },
      h("form", { class: "filters", role: "search", "aria-label": "Filter live runs", onsubmit: (e) => e.preventDefault() },
        h("label", { for: "f-tenant" }, "Tenant"), tenant,
        h("label", { for: "f-agent" }, "Agent"), agent,
        h("label", { for: "f-state" }, "State"), stateSel),
      h("form", { class: "open", role: "search", "aria-label": "Open a run by id", onsubmit: open },
        h("label", { for: "open-id" }, "Open a run (ended ones too)"), openId,
        h("button", { type: "submit" }, "Open"))),
    h("p", { class: "note" }, note, " ", when),
    h("table", { class: "runs" },
      h("caption", { class: "sr-only" }, "Live runs and their limits"),
      h("thead", {}, h("tr", {},
        ["Run", "Tenant", "Agent", "API key", "State", "Limits (observed / effective, NEAR marker)"].map((c) => h("th", { scope: "col" }, c)))),
      body),
  );
  return every(1000, async () => {
    try {
      last = await api("/v1/runs?state=live&detail=status&limit=500");
      const more = last.truncated ? ` (the first 500 of ${last.live} shown)` : "";
      say(note, `${last.live} live run${last.live === 1 ? "" : "s"}${more} ·`);
      stamp(when);
      draw();
    } catch (e) {
      last = null;
      say(note, readError(e));
      fill(when);
      fill(body);
    }
  });
}

function rows(list, tenant, agent, state) {
  const want = (value, filter) => !filter.trim() || (value || "").toLowerCase().includes(filter.trim().toLowerCase());
  const shown = list.runs.filter(
    (r) => want(r.tenant, tenant) && want(r.agent, agent) && (state === "any" || r.state === state),
  );
  if (shown.length === 0) {
    return h("tr", {}, h("td", { colspan: 6, class: "empty" }, list.runs.length ? "No live run matches the filters." : "No live runs."));
  }
  return shown.map((r) =>
    h("tr", { "data-run": r.run_id },
      h("th", { scope: "row" }, runLink(r.run_id)),
      h("td", {}, r.tenant ?? ""),
      h("td", {}, r.agent ?? ""),
      h("td", {}, h("code", {}, r.api_key ?? "")),
      h("td", {}, stateBadge(r.state)),
      h("td", { class: "limits" }, (r.limits || []).map(bar))),
  );
}
