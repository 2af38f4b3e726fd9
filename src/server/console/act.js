// Acting on a run with the pasted token: request an override (raise, suspend, resume)
// under one of its bound policies' rules, whose ceiling, longest TTL, reason and
// approvals are shown before submitting; approve pending requests. The server judges
// each request as it judges any client's, and the answer (granted, denied and why, or
// pending) is shown here and lands in the run's timeline.

import { h, fill, api, amount, now, state } from "/ui/dom.js";

export function actPanel(runId) {
  const rule = h("select", { id: "act-rule" });
  const details = h("p", { id: "act-details", class: "rule-details", "aria-live": "polite" });
  const to = h("input", { id: "act-to", inputmode: "decimal", autocomplete: "off" });
  const ttl = h("input", { id: "act-ttl", placeholder: "30m", autocomplete: "off" });
  const reason = h("input", { id: "act-reason", autocomplete: "off" });
  const toRow = h("div", { class: "field" }, h("label", { for: "act-to" }, "Raise to"), to);
  const ttlRow = h("div", { class: "field" }, h("label", { for: "act-ttl" }, "For (TTL)"), ttl);
  const result = h("div", { id: "act-result", role: "status", "aria-live": "polite" });
  const pending = h("div", { id: "pending" });
  const tokenHint = h("p", { class: "note" });
  let rules = [];
  let units = new Map();
  let boundKey = null;
  let pendingKey = null;

  const chosen = () => rules[Number(rule.value)];
  const describe = () => {
    const r = chosen();
    toRow.hidden = !r || r.kind !== "raise";
    ttlRow.hidden = !r || r.kind === "resume";
    if (!r) return fill(details, "No override rule of this run's policies applies.");
    const unit = units.get(`${r.policy}/${r.limit}`);
    const bits = [];
    if (r.kind === "raise") bits.push(`Ceiling: ${amount(unit, r.up_to)}.`);
    bits.push(r.for ? `Longest TTL: ${r.for}.` : "No TTL limit.");
    bits.push(r.requires_reason ? "A reason is required." : "No reason required.");
    if (r.approvals > 0) bits.push(`Needs ${r.approvals} approval${r.approvals > 1 ? "s" : ""} from other holders of the rule.`);
    fill(details, h("code", {}, r.text), h("br"), bits.join(" "));
    if (r.kind === "raise" && !to.value) to.value = r.up_to;
    ttl.placeholder = r.for || "";
  };
  rule.addEventListener("change", () => {
    to.value = "";
    describe();
  });

  const submit = async (e) => {
    e.preventDefault();
    const r = chosen();
    if (!r) return;
    const body = { ts: now(), policy: r.policy, kind: r.kind };
    if (r.kind === "raise") Object.assign(body, { limit: r.limit, to: to.value.trim() });
    if (r.kind !== "resume" && ttl.value.trim()) body.ttl = ttl.value.trim();
    if (reason.value.trim()) body.reason = reason.value.trim();
    await send(`/v1/runs/${encodeURIComponent(runId)}/overrides`, body, result);
  };

  const section = h("section", { "aria-labelledby": "s-act", class: "act" },
    h("h2", { id: "s-act" }, "Act"),
    tokenHint,
    h("form", { id: "act-form", onsubmit: submit },
      h("div", { class: "field" }, h("label", { for: "act-rule" }, "Override rule"), rule),
      details, toRow, ttlRow,
      h("div", { class: "field" }, h("label", { for: "act-reason" }, "Reason"), reason),
      h("button", { type: "submit" }, "Request the override")),
    result,
    h("h3", {}, "Pending requests"), pending);

  const update = async (status) => {
    fill(tokenHint, state.token ? "" : "Acting needs a token whose actor or roles a rule names: paste it at the top right.");
    const pkey = JSON.stringify(status.pending);
    if (pkey !== pendingKey) {
      pendingKey = pkey;
      fill(pending, status.pending.length ? status.pending.map((p) => pendingItem(runId, p, result)) : h("p", {}, "None."));
    }
    units = new Map(status.limits.map((l) => [`${l.policy}/${l.limit}`, l.unit]));
    const policies = [...new Set(status.limits.map((l) => l.policy).concat(status.holds))];
    const key = `${status.artifact}|${policies.join(",")}`;
    if (key !== boundKey) {
      try {
        rules = await rulesOf(status.artifact, policies);
      } catch (e) {
        // Tried again at the next refresh; the form says why it has no rules.
        fill(details, `The override rules could not be read: ${e.message}`);
        return;
      }
      boundKey = key;
      fill(rule, rules.map((r, i) => h("option", { value: i }, `${r.policy}: ${r.kind}${r.limit ? ` ${r.limit}` : ""}`)));
      describe();
    }
  };
  return { section, update };
}

/** The override rules of `names` in the artifact the run is judged by (which a deploy may
 * have replaced as the active one): the rules the server applies to this run. */
async function rulesOf(artifact, names) {
  const judged = await api(`/v1/policies?artifact=${encodeURIComponent(artifact)}`);
  return judged.policies
    .filter((p) => names.includes(p.name))
    .flatMap((p) => (p.overrides || []).map((o) => ({ ...o, policy: p.name })));
}

function pendingItem(runId, p, result) {
  const what = `${p.kind} ${p.policy}${p.limit ? ` · ${p.limit}` : ""}${p.to ? ` to ${p.to}` : ""}`;
  const approve = () =>
    send(`/v1/runs/${encodeURIComponent(runId)}/overrides/${p.seq}/approvals`, { ts: now() }, result);
  return h("div", { class: "pending", "data-seq": p.seq },
    h("span", {}, `Request ${p.seq}: ${what}, by ${p.actor} at ${p.requested_at}; approved by ${p.approvers.length ? p.approvers.join(", ") : "nobody yet"}. `),
    h("button", { type: "button", onclick: approve }, `Approve request ${p.seq}`));
}

/** Sends an override or approval and shows what the server decided. */
async function send(path, body, result) {
  fill(result, "Sending…");
  try {
    const d = await api(path, { method: "POST", body, decision: true });
    const o = d.override;
    if (!o) return fill(result, h("p", { class: "bad" }, `Rejected: ${d.reason || d.error || "the request was not judged"}`));
    const until = o.until ? ` until ${o.until}` : "";
    const why = o.why ? `: ${o.why}` : "";
    fill(result, h("p", { class: `override-${o.status}` }, `Override ${o.status}${until}${why} (request ${d.seq}).`));
  } catch (e) {
    const hint = e.status === 401 ? " Paste a token at the top right." : "";
    fill(result, h("p", { class: "bad" }, `Not sent: ${e.message}.${hint}`));
  }
}
