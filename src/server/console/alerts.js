// The Alerts view: the `ui` channel as a live feed, newest first, and what became of the
// alerts sent to every other channel (delivered, retrying, failed and why). Alerts that
// arrived since the view was last shown are counted as unread in the navigation.

import { h, fill, say, stamp, api, every, runLink, readError } from "/ui/dom.js";

const key = (a) => [a.run_id, a.seq, a.policy, a.limit, a.kind, a.channel].join("#");
/** The newest `ui` alert when the feed was last looked at (null: never looked). */
let seen = null;
let showing = false;

/** How many `ui` alerts arrived since the feed was last looked at (0 when it cannot be read). */
export async function unreadCount() {
  let feed;
  try {
    feed = await api("/v1/alerts?channel=ui&limit=100");
  } catch {
    return 0;
  }
  if (showing && feed.alerts.length) seen = key(feed.alerts[0]);
  const at = feed.alerts.findIndex((a) => key(a) === seen);
  return at === -1 ? feed.alerts.length : at;
}

export function alertsView(main) {
  const feed = h("ol", { id: "feed", class: "feed", "aria-label": "In-app alerts, newest first" });
  const deliveries = h("tbody");
  const note = h("span", { role: "status" });
  const when = h("span", { class: "stamp" });
  main.append(
    h("h1", {}, "Alerts"),
    h("p", { class: "note" }, note, " ", when),
    h("section", { "aria-labelledby": "s-feed" }, h("h2", { id: "s-feed" }, "In-app feed (channel ui)"), feed),
    h("section", { "aria-labelledby": "s-deliveries" },
      h("h2", { id: "s-deliveries" }, "Other channels: delivery"),
      h("table", { class: "deliveries" },
        h("thead", {}, h("tr", {}, ["When", "Channel", "Alert", "Run", "Delivery", "Attempts", "Last error"].map((c) => h("th", { scope: "col" }, c)))),
        deliveries)),
  );
  showing = true;
  const stop = every(1000, async () => {
    try {
      const [ui, all] = await Promise.all([
        api("/v1/alerts?channel=ui&limit=100"),
        api("/v1/alerts?channel=*&limit=200"),
      ]);
      if (ui.alerts.length) seen = key(ui.alerts[0]);
      say(note, "");
      stamp(when);
      fill(feed, ui.alerts.length ? ui.alerts.map(feedItem) : h("li", {}, "No alerts yet."));
      const others = all.alerts.filter((a) => a.channel !== "ui");
      fill(deliveries, others.length ? others.map(deliveryRow) : h("tr", {}, h("td", { colspan: 7 }, "No alerts to other channels yet.")));
    } catch (e) {
      say(note, readError(e));
    }
  });
  return () => {
    showing = false;
    stop();
  };
}

function feedItem(a) {
  return h("li", { class: `alert alert-${a.kind}`, "data-run": a.run_id },
    h("span", { class: `zone-word zone-${a.kind}` }, a.kind.toUpperCase()), " ",
    h("strong", {}, `${a.policy} · ${a.limit}`), " on run ", runLink(a.run_id),
    ` (step ${a.seq}) at ${a.ts}`);
}

function deliveryRow(a) {
  const d = a.delivery || {};
  return h("tr", { "data-channel": a.channel },
    h("td", {}, a.ts), h("td", {}, a.channel),
    h("td", {}, `${a.kind.toUpperCase()} ${a.policy} · ${a.limit}`),
    h("td", {}, runLink(a.run_id)),
    h("td", {}, h("span", { class: `badge delivery-${d.state}` }, d.state ?? "unknown"),
      d.status ? ` (HTTP ${d.status})` : ""),
    h("td", {}, d.attempts ?? 0),
    h("td", {}, d.last_error ?? ""));
}
