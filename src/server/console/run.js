// A run's page: its state and limits (live), the policies its snapshot bound with their
// hashes, acting on it, its chain verified by the server with the hashes an auditor
// cites, its decisions as a timeline, and its evidence to download as JSONL.

import { h, fill, say, api, every, bar, stateBadge, amount, duration, readError } from "/ui/dom.js";
import { actPanel } from "/ui/act.js";

export function runView(main, id) {
  const head = h("div", { class: "run-head" });
  const facts = h("dl", { class: "facts" });
  const limits = h("div", { class: "limits wide" });
  const bound = h("div");
  const verify = h("div", { class: "verify", role: "status" });
  const timeline = h("tbody");
  const note = h("p", { class: "note", role: "status" });
  const act = actPanel(id);
  const download = h("button", { type: "button", onclick: () => save(id, download) }, "Download the evidence (JSONL)");
  main.append(
    h("p", {}, h("a", { href: "#/runs" }, "← Runs")),
    head, note,
    h("section", { "aria-labelledby": "s-state" }, h("h2", { id: "s-state" }, "State"), facts),
    h("section", { "aria-labelledby": "s-limits" }, h("h2", { id: "s-limits" }, "Limits"), limits),
    act.section,
    h("section", { "aria-labelledby": "s-verify" }, h("h2", { id: "s-verify" }, "Evidence"),
      verify, h("p", {}, download), bound),
    h("section", { "aria-labelledby": "s-timeline" }, h("h2", { id: "s-timeline" }, "Timeline"),
      h("table", { class: "timeline" },
        h("thead", {}, h("tr", {}, ["Seq", "Time", "Event", "Outcome", "What", "Record hash"].map((c) => h("th", { scope: "col" }, c)))),
        timeline)),
  );
  let seq = null;
  return every(1000, async () => {
    let status;
    try {
      status = await api(`/v1/runs/${encodeURIComponent(id)}`);
    } catch (e) {
      fill(head, h("h1", {}, `Run ${id}`));
      say(note, e.status === 404 ? `No run ${id} in the evidence store.` : readError(e));
      return;
    }
    say(note, "");
    fill(head, h("h1", {}, "Run ", h("code", {}, id), " ", stateBadge(status.state)),
      status.state_reason ? h("p", { class: "reason" }, status.state_reason) : null);
    const units = new Map(status.limits.map((l) => [`${l.policy}/${l.limit}`, l.unit]));
    fill(facts, factsOf(status, units));
    fill(limits, status.limits.length ? status.limits.map(bar) : h("p", {}, "No policy is bound to this run."));
    act.update(status);
    if (status.seq === seq) return;
    seq = status.seq;
    await Promise.all([drawEvidence(id, units, timeline, bound), drawVerify(id, verify)]);
  });
}

function factsOf(s, units) {
  const t = s.totals;
  const pair = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  return [
    pair("Tenant", s.tenant), pair("Agent", s.agent), pair("API key", h("code", {}, s.api_key)),
    s.human_actor ? pair("Human actor", s.human_actor) : null,
    pair("Last event", `seq ${s.seq}${s.clock ? ` at ${s.clock}` : ""}`),
    pair("Steps", `${t.steps} judged, ${t.refused} refused`),
    pair("Spend", `$${t.cost} · ${amount("tokens", t.input_tokens)} in, ${amount("tokens", t.output_tokens)} out`),
    s.holds.length ? pair("Pause held by", s.holds.join(", ")) : null,
    s.raises.map((r) => pair("Raise in force", `${r.policy} · ${r.limit} to ${amount(units.get(`${r.policy}/${r.limit}`), r.to)}${r.until ? ` until ${r.until}` : ""}`)),
    s.suspensions.map((g) => pair("Suspended", `${g.policy}${g.until ? ` until ${g.until}` : ""}`)),
    pair("Artifact", h("code", { class: "hash" }, s.artifact)),
    pair("Snapshot", h("code", { class: "hash" }, s.snapshot)),
  ];
}

async function drawEvidence(id, units, body, bound) {
  let records;
  try {
    const text = await api(`/v1/runs/${encodeURIComponent(id)}/evidence`, { text: true });
    records = text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  } catch (e) {
    fill(body, h("tr", {}, h("td", { colspan: 6 }, readError(e))));
    return;
  }
  const rows = records.filter((r) => r.kind === "decision" || r.kind === "rejected_input").map((r) => row(r, units));
  fill(body, rows.reverse());
  const snapshot = records.filter((r) => r.kind === "snapshot").pop();
  fill(bound, snapshot ? snapshotTable(snapshot) : null);
}

function snapshotTable(record) {
  const policies = (record.body.snapshot && record.body.snapshot.policies) || [];
  return [
    h("h3", {}, "Policies bound (the run's snapshot)"),
    h("table", { class: "bound" },
      h("thead", {}, h("tr", {}, ["Policy", "Version", "Policy hash", "Limits"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, policies.map((p) => h("tr", {},
        h("th", { scope: "row" }, p.policy), h("td", {}, `v${p.version}`),
        h("td", {}, h("code", { class: "hash" }, p.hash)),
        h("td", {}, (p.limits || []).map((l) => `${l.limit} ${l.value}`).join(", ")))))),
  ];
}

function row(r, units) {
  const b = r.body;
  if (r.kind === "rejected_input") {
    return h("tr", { class: "rejected" }, h("td", {}, r.seq), h("td", {}, b.ts ?? ""), h("td", {}, "rejected"),
      h("td", {}, stateBadge("rejected")), h("td", {}, b.why ?? b.error ?? JSON.stringify(b)), h("td", {}, h("code", { class: "hash" }, r.hash)));
  }
  return h("tr", { "data-seq": b.seq, "data-event": b.event },
    h("td", {}, b.seq), h("td", {}, b.ts), h("td", {}, b.event),
    h("td", {}, stateBadge(b.action), b.override ? [" ", stateBadge(b.override.status)] : null),
    h("td", { class: "what" }, what(b, units)),
    h("td", {}, h("code", { class: "hash" }, r.hash)));
}

/** What a decision was about, in words. */
function what(b, units) {
  const i = b.input || {};
  const parts = [];
  if (b.event === "step") {
    const bits = [];
    if (i.cost !== undefined) bits.push(`$${i.cost}`);
    if (i.input_tokens !== undefined || i.output_tokens !== undefined) bits.push(`${i.input_tokens ?? 0} in / ${i.output_tokens ?? 0} out tokens`);
    if (i.model) bits.push(i.model);
    if (i.tool) bits.push(`tool ${i.tool}`);
    parts.push(h("div", {}, bits.join(" · ") || "step"));
  } else if (b.event === "override") {
    const to = i.to ? ` to ${i.to}` : "";
    parts.push(h("div", {}, `${i.kind} ${i.policy}${i.limit ? ` · ${i.limit}` : ""}${to}${i.ttl ? ` for ${duration(i.ttl)}` : ""} by ${i.actor}${i.reason ? ` (reason: ${i.reason})` : ""}`));
  } else if (b.event === "approval") {
    parts.push(h("div", {}, `approval of request ${i.override} by ${i.actor}`));
  }
  if (b.override) {
    const o = b.override;
    parts.push(h("div", { class: `override-${o.status}` }, `override ${o.status}${o.until ? ` until ${o.until}` : ""}${o.why ? `: ${o.why}` : ""}`));
  }
  if (b.reason) parts.push(h("div", { class: "reason" }, b.reason));
  for (const s of b.signals || []) {
    const unit = units.get(`${s.policy}/${s.limit}`);
    const ofWhat = s.observed !== undefined ? ` ${amount(unit, s.observed)} of ${amount(unit, s.limit_value)} (${s.percent}%)` : "";
    parts.push(h("div", { class: `signal signal-${s.kind}` }, `${s.kind.toUpperCase()} ${s.limit}${ofWhat} in ${s.policy}`));
  }
  const alerted = (b.alerts || []).filter((a) => !a.suppressed).map((a) => a.channel);
  if (alerted.length) parts.push(h("div", { class: "alerted" }, `alerted ${[...new Set(alerted)].join(", ")}`));
  return parts;
}

async function drawVerify(id, el) {
  try {
    const v = await api(`/v1/runs/${encodeURIComponent(id)}/verify`);
    const headLine = h("p", {}, "Chain head: record ", v.head.n, " ", h("code", { class: "hash" }, v.head.hash));
    const check = h("p", { class: "note" }, "Check it yourself: ", h("code", {}, `lever evidence verify --run ${id} --evidence <store>`));
    fill(el, v.verified
      ? [h("p", { class: "ok" }, `Verified by the server: ${v.records} records, every content hash and link intact.`), headLine, check]
      : [h("p", { class: "bad" }, `Verification FAILED: ${v.problem}`), headLine, check]);
  } catch (e) {
    fill(el, h("p", { class: "bad" }, readError(e)));
  }
}

/** Saves the run's evidence as a file, fetched with the token (never in a URL). */
async function save(id, button) {
  try {
    const text = await api(`/v1/runs/${encodeURIComponent(id)}/evidence`, { text: true });
    const url = URL.createObjectURL(new Blob([text], { type: "application/x-ndjson" }));
    const a = h("a", { href: url, download: `${id}.evidence.jsonl` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } catch (e) {
    button.after(h("span", { class: "bad" }, ` ${readError(e)}`));
  }
}
