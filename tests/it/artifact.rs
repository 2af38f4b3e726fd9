//! Artifacts through the real binary: reproducible bytes, verification on load, and policy
//! hashes that survive reformatting.

use super::{lever, root};
use std::path::Path;

fn copy_examples(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "policy") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn the_same_sources_build_byte_identical_artifacts_from_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (
        tmp.path().join("one/policies"),
        tmp.path().join("two/deeper/policies"),
    );
    copy_examples(&a);
    copy_examples(&b);
    let relative = lever(&a, &["build", ".", "-o", "../out.lvc"]);
    assert_eq!(
        relative.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&relative.stderr)
    );
    let absolute_out = tmp.path().join("abs.lvc");
    let absolute = lever(
        tmp.path(),
        &[
            "build",
            b.to_str().unwrap(),
            "-o",
            absolute_out.to_str().unwrap(),
        ],
    );
    assert_eq!(
        absolute.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&absolute.stderr)
    );
    let one = std::fs::read(tmp.path().join("one/out.lvc")).unwrap();
    let two = std::fs::read(&absolute_out).unwrap();
    assert_eq!(one, two, "artifacts differ");
    assert_eq!(relative.stdout, absolute.stdout, "printed ids differ");
    let id = String::from_utf8(relative.stdout).unwrap();
    assert!(
        id.starts_with("blake3:") && id.trim().len() == 7 + 64,
        "{id}"
    );
}

#[test]
fn a_tampered_artifact_is_refused_naming_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p.lvc");
    assert_eq!(
        lever(&root(), &["build", "examples", "-o", out.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let mut bytes = std::fs::read(&out).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&out, &bytes).unwrap();
    let inspect = lever(tmp.path(), &["inspect", "p.lvc"]);
    assert_eq!(inspect.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&inspect.stderr);
    assert!(
        stderr.contains("hash mismatch") && stderr.matches("blake3:").count() == 2,
        "{stderr}"
    );
    let events = root().join("examples/events/support.jsonl");
    let run = lever(
        tmp.path(),
        &[
            "run",
            "p.lvc",
            "--events",
            events.to_str().unwrap(),
            "--evidence",
            &format!("file:{}", tmp.path().join("ev").display()),
        ],
    );
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stdout.is_empty(),
        "no decision from a tampered artifact"
    );
}

fn policy_hashes(dir: &Path) -> Vec<(String, String)> {
    let out = dir.join("x.lvc");
    let build = lever(dir, &["build", ".", "-o", out.to_str().unwrap()]);
    assert_eq!(
        build.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let json = lever(dir, &["inspect", "x.lvc", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    std::fs::remove_file(out).unwrap();
    v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn reformatting_keeps_every_policy_hash_and_a_change_of_meaning_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    copy_examples(tmp.path());
    let before = policy_hashes(tmp.path());
    assert_eq!(before.len(), 5);
    for entry in std::fs::read_dir(tmp.path()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let reformatted = format!(
            "// reformatted\n\n{}",
            text.replace("    ", "\t\t")
                .replace(" {", "\n{ /* brace */")
        );
        std::fs::write(&path, reformatted).unwrap();
    }
    assert_eq!(
        policy_hashes(tmp.path()),
        before,
        "reformatting changed a policy hash"
    );
    let support = tmp.path().join("support.policy");
    let text = std::fs::read_to_string(&support).unwrap();
    std::fs::write(&support, text.replace("$5.00", "$5.01")).unwrap();
    let after = policy_hashes(tmp.path());
    let changed: Vec<&String> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| &a.0)
        .collect();
    assert_eq!(changed, ["support_budget"]);
}

#[test]
fn inspect_shows_header_policies_and_disassembly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p.lvc");
    lever(&root(), &["build", "examples", "-o", out.to_str().unwrap()]);
    let text = String::from_utf8(lever(tmp.path(), &["inspect", "p.lvc"]).stdout).unwrap();
    for needle in [
        "artifact blake3:",
        "format   1",
        "support_budget v3 blake3:",
        "monitors:",
        "agg #",
        "aggregates:",
        "field step.cost",
    ] {
        assert!(text.contains(needle), "inspect lacks {needle:?}:\n{text}");
    }
}

#[test]
fn build_with_errors_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bad.lvc");
    let r = lever(
        &root().join("tests/check/unit_limit_value"),
        &["build", ".", "-o", out.to_str().unwrap()],
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(!out.exists());
}

/// `lever run ARTIFACT` of the example events in `dir`, with extra flags.
fn run_with(dir: &Path, artifact: &str, extra: &[&str]) -> std::process::Output {
    let events = root().join("examples/events/support.jsonl");
    let evidence = format!("file:{}", dir.join("ev").display());
    let mut args = vec![
        "run",
        artifact,
        "--events",
        events.to_str().unwrap(),
        "--evidence",
        evidence.as_str(),
    ];
    args.extend(extra);
    lever(dir, &args)
}

#[test]
fn an_empty_or_truncated_artifact_is_refused_and_an_artifact_without_policies_needs_allow_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let built = dir.join("p.lvc");
    assert_eq!(
        lever(
            &root(),
            &["build", "examples", "-o", built.to_str().unwrap()]
        )
        .status
        .code(),
        Some(0)
    );
    let whole = std::fs::read(&built).unwrap();
    for (name, bytes) in [
        ("empty.lvc", &whole[..0]),
        ("five.lvc", &whole[..5]),
        ("half.lvc", &whole[..whole.len() / 2]),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
        let out = run_with(dir, name, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}: no decision");
        assert!(
            stderr.contains("not a Lever artifact")
                || stderr.contains("hash mismatch")
                || stderr.contains("empty"),
            "{name}: {stderr}"
        );
    }
    // Sources that declare no policy: an artifact that governs nothing.
    std::fs::write(dir.join("nothing.policy"), "import std.llm\n").unwrap();
    let empty = dir.join("nothing.lvc");
    assert_eq!(
        lever(
            dir,
            &["build", "nothing.policy", "-o", empty.to_str().unwrap()]
        )
        .status
        .code(),
        Some(0)
    );
    let refused = run_with(dir, "nothing.lvc", &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds no policy"));
    let allowed = run_with(dir, "nothing.lvc", &["--allow-empty"]);
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
}

#[test]
fn an_artifact_whose_bytecode_lies_about_its_sources_is_refused_naming_the_policy() {
    use lever::compile::artifact::Artifact;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let honest = dir.join("p.lvc");
    lever(
        &root(),
        &["build", "examples", "-o", honest.to_str().unwrap()],
    );
    let artifact = Artifact::from_bytes(std::fs::read(&honest).unwrap()).unwrap();
    // The bytecode enforces $9.00 where the source, and the policy's hash, say $5.00.
    let mut body = artifact.body.clone();
    let policy = body
        .program
        .policies
        .iter_mut()
        .find(|p| p.name == "support_budget")
        .unwrap();
    let cost = policy
        .limits
        .iter_mut()
        .find(|l| l.name == "std.llm.cost")
        .unwrap();
    assert_eq!(cost.value, 5_000_000_000);
    cost.value = 9_000_000_000;
    let lying = Artifact::new(body).unwrap();
    std::fs::write(dir.join("lying.lvc"), &lying.bytes).unwrap();
    let out = run_with(dir, "lying.lvc", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("policy `support_budget`"), "{stderr}");
    assert!(out.stdout.is_empty());
    let inspect = lever(dir, &["inspect", "lying.lvc", "--verify"]);
    assert_eq!(inspect.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&inspect.stderr).contains("support_budget"));
    assert_eq!(
        lever(dir, &["inspect", "p.lvc", "--verify"]).status.code(),
        Some(0)
    );
}

/// A program that reaches every encoded enum of the artifact: units, strategies, binding
/// moments, error handling, operators, aggregate functions, channel kinds and arguments,
/// scopes, enforcements and override grantees.
const PINNED_PROGRAM: &str = r#"
import std.llm
signal retries: count
channel ops = webhook(url: env("OPS_URL"), secret: env("OPS_SECRET"))
channel mail = email(to: ["a@example.com"], subject: "s")
monitor tool_cost = sum(step.cost where step.kind == "tool_call" and step.model != "x")
monitor burn = rate(step.cost, 60s)
monitor tries = max(step.retries) * 2 - count(step.pii or not step.pii) / 1
policy pinned {
    version 7
    description "every enum"
    scope (agent in ["a", "b"] and not labels["team"] == "x") or tenant == "t"
    precedence 5
    conflict explicit_priority
    bind each_step
    on_error fail_open
    alerts { max_per_run 3  min_interval 1m }
    limit std.llm.cost to $5.00 { near 80% => alert(ops, ui)  breach => kill, alert(mail) }
    limit tool_cost to $1.00 { breach => pause }
    limit burn to $0.10 { breach => stop }
    limit tries to 10 { near 50% => alert(ui) }
    override {
        allow role "oncall" to raise std.llm.cost up to $8.00 for 30m requires reason approvals 1
        allow actor "alice" to suspend
        allow role "ops" to resume
    }
}
"#;

/// Each format version with the blake3 of the body its encoding gives `PINNED_PROGRAM`.
/// When a change to the encoded types changes these bytes, bump
/// `compile::artifact::FORMAT_VERSION` (artifacts of the old encoding are then refused by
/// name, never misread) and pin the new body here.
const PINNED: &[(u32, &str)] = &[(
    1,
    "7f055138a45bf748e73195a2dcbed2c6107b6ac0b046e1fd5c95f5323e706cdb",
)];

#[test]
fn the_format_version_changes_whenever_the_encoding_does() {
    let checked = lever::check::check(lever::source::SourceSet::from_text(
        "p.policy",
        PINNED_PROGRAM,
    ));
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    let artifact = lever::compile::build(&checked, &["p.policy".into()]).unwrap();
    let bytes = &artifact.bytes;
    // The header by hand: magic, version (u32 LE), blake3 of magic, version and body.
    assert_eq!(&bytes[..8], b"LEVERLVC");
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    assert_eq!(version, lever::compile::artifact::FORMAT_VERSION);
    let body = &bytes[44..];
    let mut h = blake3::Hasher::new();
    h.update(&bytes[..12]);
    h.update(body);
    assert_eq!(&bytes[12..44], h.finalize().as_bytes());
    let pinned = PINNED
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, hash)| *hash);
    let found = blake3::hash(body).to_hex().to_string();
    assert_eq!(
        pinned,
        Some(found.as_str()),
        "the artifact body's encoding changed under format version {version}: bump \
         FORMAT_VERSION and pin the new body ({found})"
    );
}
