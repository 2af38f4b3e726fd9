//! Signed artifacts: `lever keygen`, `lever build --sign`, `lever verify-artifact`, and
//! `--trust` on `lever run` and `lever serve` (at start, on `PUT /v1/artifacts`, on the
//! watched file), each tampering named, each refused deploy recorded.

use super::lever;
use super::served::Served;
use std::path::Path;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A cap policy, built (and signed by `key` when given) to `NAME.lvc`.
fn build(dir: &Path, name: &str, cap: u32, key: Option<&str>) -> String {
    let src = format!("{name}.policy");
    std::fs::write(
        dir.join(&src),
        format!("import std.llm\npolicy cap {{ version {cap} scope all limit std.llm.cost to ${cap} {{ breach => stop }} }}\n"),
    )
    .unwrap();
    let out = format!("{name}.lvc");
    let mut args = vec!["build", src.as_str(), "-o", out.as_str()];
    if let Some(k) = key {
        args.extend(["--sign", k]);
    }
    let built = lever(dir, &args);
    assert!(built.status.success(), "{}", text(&built.stderr));
    text(&built.stdout).trim().to_string()
}

fn keygen(dir: &Path, name: &str) -> String {
    let out = lever(dir, &["keygen", "--out", name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn verify(dir: &Path, artifact: &str, trust: &str) -> (Option<i32>, String) {
    let out = lever(dir, &["verify-artifact", artifact, "--trust", trust]);
    (
        out.status.code(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn keys_sign_artifacts_and_every_tampering_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ci = keygen(dir, "ci");
    assert!(ci.starts_with("ed25519:") && ci.len() == 24, "{ci}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("ci"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the secret key is private");
    assert_eq!(
        lever(dir, &["keygen", "--out", "ci"]).status.code(),
        Some(2),
        "never overwrites"
    );
    keygen(dir, "stranger");
    let a = build(dir, "a", 5, Some("ci"));
    let (code, said) = verify(dir, "a.lvc", "ci.pub");
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(said.trim(), format!("verified: {a} signed by {ci}"));
    // A directory of public keys is a trust too.
    std::fs::create_dir(dir.join("keys")).unwrap();
    std::fs::copy(dir.join("ci.pub"), dir.join("keys/ci.pub")).unwrap();
    assert_eq!(verify(dir, "a.lvc", "keys").0, Some(0));

    let refused = |artifact: &str, trust: &str, why: &str| {
        let (code, said) = verify(dir, artifact, trust);
        assert_eq!(code, Some(1), "{said}");
        assert!(said.contains(why), "expected `{why}` in: {said}");
    };
    // Signed by a key the runtime does not trust.
    build(dir, "s", 5, Some("stranger"));
    refused("s.lvc", "ci.pub", "which is not trusted");
    // No signature at all, or the signature removed.
    build(dir, "u", 5, None);
    refused(
        "u.lvc",
        "ci.pub",
        "the artifact is not signed (no u.lvc.sig)",
    );
    // A signature swapped in from another artifact.
    build(dir, "b", 2, Some("ci"));
    std::fs::copy(dir.join("b.lvc.sig"), dir.join("u.lvc.sig")).unwrap();
    refused("u.lvc", "ci.pub", "the signature is for artifact");
    // That signature relabelled with this artifact's id: it does not verify.
    let b_sig = std::fs::read_to_string(dir.join("b.lvc.sig")).unwrap();
    let u_id = build(dir, "u", 5, None);
    let b_id = b_sig.split_whitespace().nth(1).unwrap().to_string();
    std::fs::write(dir.join("u.lvc.sig"), b_sig.replace(&b_id, &u_id)).unwrap();
    refused("u.lvc", "ci.pub", "does not verify");
    // One byte of the body changed: the hash no longer verifies, whatever is signed.
    let mut bytes = std::fs::read(dir.join("a.lvc")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(dir.join("a.lvc"), bytes).unwrap();
    refused("a.lvc", "ci.pub", "hash");
}

#[test]
fn lever_run_with_trust_takes_signed_artifacts_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keygen(dir, "ci");
    build(dir, "a", 5, Some("ci"));
    build(dir, "u", 5, None);
    let events = "{\"type\":\"run_start\",\"run_id\":\"r\",\"ts\":\"2026-01-20T10:00:00Z\",\"tenant\":\"t\"}\n\
                  {\"type\":\"deploy\",\"ts\":\"2026-01-20T10:01:00Z\",\"artifact\":\"u.lvc\"}\n";
    std::fs::write(dir.join("e.jsonl"), events).unwrap();
    let run = |artifact: &str| {
        lever(
            dir,
            &[
                "run",
                artifact,
                "--events",
                "e.jsonl",
                "--trust",
                "ci.pub",
                "--dry-run",
            ],
        )
    };
    let out = run("u.lvc");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not signed"),
        "{}",
        text(&out.stderr)
    );
    let out = run("a.policy");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("policy sources carry no signature"),
        "{}",
        text(&out.stderr)
    );
    // Signed: judged; the deploy of an unsigned artifact is a rejected line.
    let out = run("a.lvc");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["action"], "continue");
    assert_eq!(lines[1]["action"], "rejected");
    assert!(
        lines[1]["reason"].as_str().unwrap().contains("not signed"),
        "{}",
        lines[1]
    );
}

#[test]
fn lever_serve_with_trust_refuses_and_records_unsigned_deploys() {
    let refused_start = super::stores::Schema::new();
    let served = super::stores::Schema::new();
    serve_with_trust("file:ev0", "file:ev");
    serve_with_trust(&refused_start.url, &served.url);
}

/// A refused start recorded in `refused`, then refused and accepted deploys in `evidence`.
fn serve_with_trust(refused: &str, evidence: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ci = keygen(dir, "ci");
    build(dir, "a", 5, Some("ci"));
    let b = build(dir, "b", 2, Some("ci"));
    build(dir, "u", 3, None);
    std::fs::write(
        dir.join("lever.toml"),
        "[[tokens]]\ntoken = \"admin-token-0123456789\"\nactor = \"ops@example.com\"\nadmin = true\n\n[trust]\nkeys = [\"ci.pub\"]\n",
    )
    .unwrap();
    // An unsigned artifact does not start.
    let start = lever(
        dir,
        &[
            "serve",
            "--artifact",
            "u.lvc",
            "--config",
            "lever.toml",
            "--evidence",
            refused,
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(start.status.code(), Some(1));
    assert!(
        text(&start.stderr).contains("not signed"),
        "{}",
        text(&start.stderr)
    );
    let recorded = super::store_records(dir, refused, "deploy_refused");
    assert_eq!(recorded.len(), 1, "the refused start is recorded");
    assert_eq!(recorded[0]["body"]["actor"], "lever-serve");
    std::fs::copy(dir.join("a.lvc"), dir.join("active.lvc")).unwrap();
    std::fs::copy(dir.join("a.lvc.sig"), dir.join("active.lvc.sig")).unwrap();
    let served = Served::launch(
        dir,
        &[
            "--artifact",
            "active.lvc",
            "--config",
            "lever.toml",
            "--evidence",
            evidence,
        ],
    );
    let put = |body: &[u8], signature: Option<&str>| {
        let mut req = served
            .agent
            .put(&format!("{}/v1/artifacts", served.base))
            .header("authorization", "Bearer admin-token-0123456789");
        if let Some(sig) = signature {
            req = req.header("lever-artifact-signature", sig.trim());
        }
        let mut r = req.send(body).unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let b_bytes = std::fs::read(dir.join("b.lvc")).unwrap();
    let b_sig = std::fs::read_to_string(dir.join("b.lvc.sig")).unwrap();
    let (status, said) = put(&b_bytes, None);
    assert_eq!(status, 422, "{said}");
    assert!(said.contains("not signed"), "{said}");
    let a_sig = std::fs::read_to_string(dir.join("a.lvc.sig")).unwrap();
    let (status, said) = put(&b_bytes, Some(&a_sig));
    assert_eq!(status, 422, "{said}");
    assert!(said.contains("the signature is for artifact"), "{said}");
    let (status, said) = put(&b_bytes, Some(&b_sig));
    assert_eq!(status, 200, "{said}");
    assert_eq!(served.artifact_of_id(), b);
    // The watched file replaced by an unsigned artifact: refused, and recorded.
    std::fs::remove_file(dir.join("active.lvc.sig")).unwrap();
    std::fs::copy(dir.join("u.lvc"), dir.join("active.lvc.tmp")).unwrap();
    std::fs::rename(dir.join("active.lvc.tmp"), dir.join("active.lvc")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refusals = loop {
        let records = super::store_records(dir, evidence, "deploy_refused");
        if records.len() == 3 || std::time::Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let actors: Vec<&str> = refusals
        .iter()
        .map(|r| r["body"]["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        ["ops@example.com", "ops@example.com", "local-file"],
        "{refusals:?}"
    );
    assert!(
        refusals[2]["body"]["why"]
            .as_str()
            .unwrap()
            .contains("not signed")
    );
    assert_eq!(served.artifact_of_id(), b, "the active artifact stays");
    assert_eq!(served.stop(), Some(0));
    // The deploy record names the signer.
    let deploy = &super::store_records(dir, evidence, "deploy")[0];
    assert_eq!(deploy["body"]["signer"], ci.as_str());
    assert_eq!(deploy["body"]["to"], b.as_str());
}
