// The Policies view: the active artifact, each policy with its scope and its limits and
// override rules in words, and the deploy history (who, when, old → new artifact, the
// signing key) with `lever diff` of each deploy.

import { h, fill, say, api, every, amount, readError } from "/ui/dom.js";

export function policiesView(main) {
  const active = h("div");
  const history = h("div");
  const note = h("p", { class: "note", role: "status" });
  main.append(
    h("h1", {}, "Policies"),
    note,
    h("section", { "aria-labelledby": "s-active" }, h("h2", { id: "s-active" }, "Active artifact"), active),
    h("section", { "aria-labelledby": "s-deploys" }, h("h2", { id: "s-deploys" }, "Deploy history"), history),
  );
  let shown = null;
  // A deploy changes this view; check every five seconds and redraw only then.
  return every(5000, async () => {
    try {
      const [policies, deploys] = await Promise.all([api("/v1/policies"), api("/v1/deploys?limit=20")]);
      say(note, "");
      const key = `${policies.artifact}|${deploys.deploys.map((d) => d.hash).join(",")}`;
      if (key === shown) return;
      shown = key;
      fill(active, activeOf(policies));
      fill(history, deploys.deploys.length ? deploys.deploys.map(deployOf)
        : h("p", {}, "No deploy since the first artifact: this server has run one artifact only."));
    } catch (e) {
      shown = null;
      say(note, readError(e));
    }
  });
}

function activeOf(a) {
  return [
    h("p", {}, "Artifact ", h("code", { class: "hash" }, a.artifact), ` · engine ${a.engine}`),
    a.policies.map((p) => h("article", { class: "policy", "data-policy": p.name },
      h("h3", {}, `${p.name} v${p.version}`),
      h("p", { class: "note" }, `scope ${p.scope} · precedence ${p.precedence} · conflict ${p.conflict} · bind ${p.bind} · on_error ${p.on_error}`),
      h("p", {}, "hash ", h("code", { class: "hash" }, p.hash)),
      h("ul", { "aria-label": `Limits of ${p.name}` }, p.limits.map((l) => h("li", {}, limitWords(l)))),
      p.overrides.length
        ? h("ul", { "aria-label": `Override rules of ${p.name}` }, p.overrides.map((o) => h("li", {}, h("code", {}, o.text))))
        : h("p", { class: "note" }, "No override rules."))),
  ];
}

function limitWords(l) {
  const acts = (x) => [x.enforcement, ...(x.alerts || []).map((c) => `alert(${c})`)].filter(Boolean).join(", ") || "nothing";
  const near = l.near ? `; NEAR at ${l.near.percent}% (${amount(l.unit, l.near.at)}) → ${acts(l.near.actions)}` : "";
  return [h("code", {}, `limit ${l.limit} to ${l.text}`), `${near}; BREACH → ${acts(l.breach)}`];
}

function deployOf(d) {
  return h("article", { class: "deploy" },
    h("h3", {}, `${d.ts} by ${d.actor}`),
    h("p", {}, h("code", { class: "hash" }, d.from), " → ", h("code", { class: "hash" }, d.to)),
    d.signer ? h("p", { class: "note" }, `signed by ${d.signer}`) : null,
    h("p", { class: "note" }, "deploy record hash ", h("code", { class: "hash" }, d.hash)),
    d.diff !== undefined
      ? h("details", { open: true }, h("summary", {}, "lever diff"), h("pre", {}, d.diff))
      : h("p", { class: "bad" }, `No diff: ${d.diff_error}`));
}
