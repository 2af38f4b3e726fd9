//! Budgets across runs through the real binary: the artifact's format, `lever fmt`,
//! `lever diff`, and `lever serve` refusing what it cannot yet count durably.

use super::lever;
use std::path::Path;

const KEY_DAILY: &str = r#"import std.llm
policy key_daily {
    version 1
    scope all
    limit std.llm.cost to $20.00 per (tenant, api_key) per 1d { breach => stop }
}
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn an_artifact_with_a_budget_is_format_version_2_and_says_so_when_inspected() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "p.policy", KEY_DAILY);
    let out = lever(tmp.path(), &["build", "p.policy", "-o", "p.lvc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(tmp.path().join("p.lvc")).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
    let out = lever(tmp.path(), &["inspect", "p.lvc"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("format   2 ("), "{text}");
    assert!(
        text.contains("limit std.llm.cost (std.llm.cost) to 20 per (tenant, api_key) per 1d"),
        "{text}"
    );
}

#[test]
fn fmt_keeps_a_budget_key_apart_from_per() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "p.policy",
        &KEY_DAILY.replace("(tenant, api_key)", "(tenant,api_key)"),
    );
    let out = lever(tmp.path(), &["fmt", "p.policy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(tmp.path().join("p.policy")).unwrap();
    assert_eq!(text, KEY_DAILY);
}

#[test]
fn diff_names_a_budget_widened_narrowed_added_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("per tenant per 1d", "budget_widened"),
        ("per (tenant, api_key) per 30d", "budget_narrowed"),
        ("per agent per 1d", "budget_changed"),
        ("", "budget_removed"),
    ];
    write(tmp.path(), "a.policy", KEY_DAILY);
    for (budget, kind) in cases {
        // The old artifact's key is `(tenant, api_key) per 1d`; the new one's is `budget`.
        let new = KEY_DAILY.replace("per (tenant, api_key) per 1d", budget);
        let (from, to) = if kind == "budget_widened" {
            (new.clone(), KEY_DAILY.to_string())
        } else {
            (KEY_DAILY.to_string(), new)
        };
        write(tmp.path(), "a.policy", &from);
        write(tmp.path(), "b.policy", &to);
        assert!(
            lever(tmp.path(), &["build", "a.policy", "-o", "a.lvc"])
                .status
                .success()
        );
        assert!(
            lever(tmp.path(), &["build", "b.policy", "-o", "b.lvc"])
                .status
                .success()
        );
        let out = lever(tmp.path(), &["diff", "a.lvc", "b.lvc", "--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "{budget}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("\"kind\": \"{kind}\"")),
            "{budget}: {text}"
        );
    }
}

#[test]
fn serve_refuses_an_artifact_with_a_budget_rather_than_count_it_per_server() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "p.policy", KEY_DAILY);
    let out = lever(
        tmp.path(),
        &[
            "serve",
            "--artifact",
            "p.policy",
            "--evidence",
            "file:ev",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("budgets across runs (`std.llm.cost` per (tenant, api_key) per 1d of policy `key_daily`)"),
        "{err}"
    );
}
