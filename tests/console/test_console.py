"""The console at `/ui` in Debian's Chromium, against a real `lever serve`.

Runs are driven over HTTP as an agent would drive them; the page is only looked at and
clicked. Expected figures come from the test policy (`policies/console.policy`): a $1.00
cost limit, NEAR at 50%, BREACH pauses and alerts `ui` and `ops` (whose URL is unset, so
its delivery fails), a raise up to $3.00 for 1h with a reason, a resume, and a suspension
that needs one approval.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
from lever_serve import lever_bin
from playwright.sync_api import Page, expect

from conftest import NOREAD, SEC, SEC2, SRE, Served, now, screenshot

# Generous: CI runs these beside the whole suite on two cores.
expect.set_options(timeout=30_000)


def open_console(page: Page, served: Served, token: str | None, view: str = "#/runs") -> None:
    page.goto(f"{served.url}/ui/{view}")
    if token is not None:
        page.fill("#token", token)
        page.click("#token-form button[type=submit]")


def labelled_inputs(page: Page) -> None:
    """Every visible control has a label (the accessible name a screen reader says)."""
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select')]
            .filter((el) => el.offsetParent !== null && el.labels.length === 0)
            .map((el) => el.id || el.outerHTML)"""
    )
    assert unlabelled == []


def test_a_run_crosses_near_and_breach_in_the_runs_view(server: Served, page: Page) -> None:
    run = "bar-1"
    server.start(run)
    open_console(page, server, SRE)
    row = page.locator(f'tr[data-run="{run}"]')
    cost = row.locator('.limit[data-limit="std.llm.cost"]')
    server.step(run, "0.30")
    expect(cost).to_have_attribute("data-zone", "below")
    expect(cost.locator(".limit-words")).to_contain_text("$0.30 of $1.00 (30%) · NEAR at $0.50")
    expect(page.locator("#unread")).to_be_hidden()
    server.step(run, "0.30")
    expect(cost).to_have_attribute("data-zone", "near")
    expect(cost.locator(".limit-words")).to_contain_text("$0.60 of $1.00 (60%)")
    expect(cost.locator(".zone-word")).to_have_text("NEAR")
    expect(page.locator("#unread")).to_have_text("1")
    assert server.step(run, "0.45")["action"] == "pause"
    expect(cost).to_have_attribute("data-zone", "breach")
    expect(cost.locator("[role=meter]")).to_have_attribute("aria-valuenow", "1.05")
    expect(cost.locator(".limit-words")).to_contain_text("$1.05 of $1.00 (105%)")
    expect(row.locator(".badge")).to_have_text("paused")
    expect(row).to_contain_text("acme")
    expect(row).to_contain_text("console-bot")
    expect(row).to_contain_text("k-7")
    expect(page.locator("#unread")).to_have_text("2")
    labelled_inputs(page)
    screenshot(page, f"runs-{server.store}", docs=server.store == "file")
    # The filters narrow the live runs.
    page.fill("#f-tenant", "globex")
    expect(page.locator("td.empty")).to_have_text("No live run matches the filters.")
    page.fill("#f-tenant", "acm")
    page.select_option("#f-state", "paused")
    expect(row).to_be_visible()
    page.select_option("#f-state", "running")
    expect(row).to_have_count(0)

    # The alert feed: both ui alerts, newest first; the ops delivery failed, and says why.
    page.click("nav a[data-view=alerts]")
    items = page.locator("#feed li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_contain_text("BREACH console_budget · std.llm.cost on run bar-1")
    expect(items.nth(1)).to_contain_text("NEAR console_budget · std.llm.cost on run bar-1")
    expect(page.locator("#unread")).to_be_hidden()
    ops = page.locator('.deliveries tr[data-channel="ops"]')
    expect(ops).to_contain_text("failed")
    expect(ops).to_contain_text("LEVER_CONSOLE_TEST_OPS_URL is not set")
    screenshot(page, f"alerts-{server.store}", docs=server.store == "file")


def test_overrides_made_in_the_page_are_judged_and_shown(server: Served, page: Page) -> None:
    run = "act-1"
    server.start(run)
    server.step(run, "0.60")
    assert server.step(run, "0.45")["action"] == "pause"
    open_console(page, server, SRE, f"#/run/{run}")
    expect(page.locator(".run-head .badge")).to_have_text("paused")
    details = page.locator("#act-details")
    expect(details).to_contain_text("up to $3.00 for 1h requires reason")
    expect(details).to_contain_text("Ceiling: $3.00. Longest TTL: 1h. A reason is required.")
    labelled_inputs(page)

    # Above the ceiling: denied, and the page says why.
    page.fill("#act-to", "9.00")
    page.fill("#act-reason", "INC-7")
    page.click("#act-form button[type=submit]")
    result = page.locator("#act-result")
    expect(result).to_contain_text("Override denied")
    expect(result).to_contain_text("above_ceiling")

    # Within it: granted, and the bar's limit moves to $2.00.
    page.fill("#act-to", "2.00")
    page.fill("#act-ttl", "30m")
    page.click("#act-form button[type=submit]")
    expect(result).to_contain_text("Override granted until")
    cost = page.locator('.limits .limit[data-limit="std.llm.cost"]')
    # NEAR is 50% of the raised limit.
    expect(cost.locator(".limit-words")).to_contain_text(
        "$1.05 of $2.00 (53%) (raised from $1.00) · NEAR at $1.00"
    )
    overrides = page.locator('.timeline tr[data-event="override"]')
    expect(overrides).to_have_count(2)
    expect(overrides.nth(0)).to_contain_text(
        "raise console_budget · std.llm.cost to 2.00 for 30m by sre@example.com (reason: INC-7)"
    )
    expect(overrides.nth(0)).to_contain_text("override granted until")
    expect(overrides.nth(1)).to_contain_text("override denied: above_ceiling")

    # The pause is resumed from the page, with the keyboard alone: Enter in the form sends it.
    page.select_option("#act-rule", label="console_budget: resume")
    expect(details).to_contain_text('allow role "sre-oncall" to resume')
    expect(page.locator("#act-to")).to_be_hidden()
    expect(page.locator("#act-ttl")).to_be_hidden()
    page.focus("#act-reason")
    page.keyboard.press("Enter")
    expect(result).to_contain_text("Override granted")
    expect(page.locator(".run-head .badge")).to_have_text("running")
    screenshot(page, f"run-{server.store}", docs=server.store == "file")

    # The store holds what the page showed: three override decisions by the token's actor.
    evidence = read_evidence(server, run)
    decisions = [r["body"] for r in evidence if r["kind"] == "decision"]
    judged = [
        (d["input"]["actor"], d["override"]["status"])
        for d in decisions
        if d["event"] == "override"
    ]
    assert judged == [("sre@example.com", s) for s in ("denied", "granted", "granted")]


def test_a_pending_request_is_approved_in_the_page(server: Served, page: Page) -> None:
    run = "approve-1"
    server.start(run)
    request = {"ts": now(), "policy": "console_budget", "kind": "suspend", "ttl": "10m",
               "reason": "noisy"}  # fmt: skip
    asked = server.post(f"/v1/runs/{run}/overrides", request, SEC)
    assert asked["override"]["status"] == "pending"
    seq = asked["seq"]
    open_console(page, server, SEC2, f"#/run/{run}")
    item = page.locator(f'.pending[data-seq="{seq}"]')
    expect(item).to_contain_text("suspend console_budget, by sec@example.com")
    expect(item).to_contain_text("approved by nobody yet")
    item.get_by_role("button", name=f"Approve request {seq}").click()
    expect(page.locator("#act-result")).to_contain_text("Override granted")
    expect(page.locator("#pending")).to_have_text("None.")
    approval = page.locator('.timeline tr[data-event="approval"]')
    expect(approval).to_contain_text(f"approval of request {seq} by sec2@example.com")
    expect(approval).to_contain_text("override granted")
    expect(page.locator("dl.facts dt", has_text="Suspended")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("console_budget until")


def test_an_ended_run_is_found_verified_and_downloaded(server: Served, page: Page) -> None:
    run = "ended-1"
    server.start(run)
    server.step(run, "0.20")
    assert server.post(f"/v1/runs/{run}/end", {"ts": now()})["event"] == "run_end"
    open_console(page, server, SRE)
    expect(page.locator("p.note").first).to_contain_text("0 live runs")
    page.fill("#open-id", run)
    page.click("form.open button")
    expect(page.locator(".run-head .badge")).to_have_text("ended")
    evidence = read_evidence(server, run)
    head = evidence[-1]
    verify = page.locator(".verify")
    expect(verify).to_contain_text(f"Verified by the server: {len(evidence)} records")
    expect(verify).to_contain_text(f"Chain head: record {head['n']} {head['hash']}")
    bound = page.locator("table.bound tbody tr")
    expect(bound).to_contain_text(policy_hash(server, "console_budget"))
    decisions = [r for r in evidence if r["kind"] == "decision"]
    rows = page.locator(".timeline tbody tr")
    expect(rows).to_have_count(len(decisions))
    expect(rows.nth(0)).to_contain_text(decisions[-1]["hash"])
    with page.expect_download() as download:
        page.click("text=Download the evidence (JSONL)")
    saved = Path(download.value.path()).read_text()
    assert saved == raw_evidence(server, run)
    assert download.value.suggested_filename == f"{run}.evidence.jsonl"


def test_the_policies_view_shows_each_deploy_with_its_diff(
    server: Served, page: Page, tmp_path: Path
) -> None:
    open_console(page, server, SRE, "#/policies")
    policy = page.locator('article.policy[data-policy="console_budget"]')
    expect(policy).to_contain_text(
        "limit std.llm.cost to $1.00; NEAR at 50% ($0.50) → alert(ui); "
        "BREACH → pause, alert(ui), alert(ops)"
    )
    expect(policy).to_contain_text('allow role "security" to suspend for 30m requires reason')
    expect(page.locator("#main")).to_contain_text("No deploy since the first artifact")
    old = server.http.get(f"{server.url}/v1/policies", headers=bearer(SRE)).json()["artifact"]
    new = deploy_v2(server, tmp_path)
    deploy = page.locator("article.deploy")
    expect(deploy).to_contain_text("by sre@example.com")
    expect(deploy).to_contain_text(f"{old} → {new}")
    expect(deploy.locator("pre")).to_contain_text("~ policy console_budget v1 -> v2")
    expect(deploy.locator("pre")).to_contain_text("limit raised std.llm.cost: $1.00 -> $1.50")
    expect(policy).to_contain_text("limit std.llm.cost to $1.50")
    screenshot(page, f"policies-{server.store}", docs=server.store == "file")


def test_reads_need_a_token_with_the_read_role(server: Served, page: Page) -> None:
    server.start("secret-1")
    open_console(page, server, None)
    note = page.locator("p.note").first
    expect(note).to_contain_text("Paste a token with the read role")
    expect(page.locator('tr[data-run="secret-1"]')).to_have_count(0)
    open_console(page, server, NOREAD)
    expect(note).to_contain_text("nobody@example.com may not read")
    open_console(page, server, SRE)
    expect(page.locator('tr[data-run="secret-1"]')).to_be_visible()
    # The token is in the tab's memory only: not in the address, a cookie or storage.
    assert SRE not in page.url
    kept = page.evaluate(
        "() => document.cookie + JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
    )
    assert SRE not in kept
    page.reload()
    expect(page.locator("#token-state")).to_have_text("no token: reads need one")


def test_an_open_console_reads_without_a_token(open_server: Served, page: Page) -> None:
    open_server.start("open-1")
    open_console(page, open_server, None)
    expect(page.locator('tr[data-run="open-1"]')).to_be_visible()
    answer = open_server.http.get(f"{open_server.url}/ui/")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    config = open_server.http.get(f"{open_server.url}/ui/config.json").json()
    assert config["require_token"] is False


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw_evidence(server: Served, run: str) -> str:
    answer = server.http.get(f"{server.url}/v1/runs/{run}/evidence", headers=bearer(SRE))
    assert answer.status_code == 200, answer.text
    return answer.text


def read_evidence(server: Served, run: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw_evidence(server, run).splitlines() if line]


def policy_hash(server: Served, name: str) -> str:
    active = server.http.get(f"{server.url}/v1/policies", headers=bearer(SRE)).json()
    return next(str(p["hash"]) for p in active["policies"] if p["name"] == name)


def deploy_v2(server: Served, tmp_path: Path) -> str:
    """Builds the test policy as v2 with a $1.50 limit and deploys it; its artifact id."""
    source = (Path(__file__).parent / "policies" / "console.policy").read_text()
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "console.policy").write_text(
        source.replace("version 1", "version 2").replace("to $1.00 {", "to $1.50 {")
    )
    built = subprocess.run(
        [lever_bin(), "build", str(v2), "-o", str(tmp_path / "v2.lvc")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    answer = httpx.put(
        f"{server.url}/v1/artifacts",
        content=(tmp_path / "v2.lvc").read_bytes(),
        headers=bearer(SRE),
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["to"])
