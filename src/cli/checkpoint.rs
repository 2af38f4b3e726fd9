//! `lever evidence checkpoint|prove|check-proof|consistency|cosign`: signed checkpoints of
//! the evidence log, one record's proof, and a witness's countersignature.

use super::evidence::with_store;
use crate::base::trust::SecretKey;
use crate::evidence::log::{self, Proof};
use crate::evidence::note::Checkpoint;
use crate::evidence::{ChainId, RecordKind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn read(path: &Path) -> Result<String, ExitCode> {
    std::fs::read_to_string(path).map_err(|e| super::io_error(format!("{}: {e}", path.display())))
}

fn fail(why: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {why}");
    ExitCode::from(1)
}

pub(super) fn take(url: &str, key: Option<&Path>, origin: &str) -> ExitCode {
    let key = match key.map(SecretKey::read).transpose() {
        Ok(k) => k,
        Err(e) => return super::io_error(e),
    };
    with_store(url, false, |store| {
        let started = std::time::Instant::now();
        let (head, note) = log::checkpoint(store, origin, key.as_ref())?;
        print!("{note}");
        eprintln!(
            "lever: checkpoint of {} records in {:.2?}",
            head.size,
            started.elapsed()
        );
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn prove(url: &str, run: &str, seq: u64, kind: &str) -> ExitCode {
    let Some(kind) = RecordKind::from_name(kind) else {
        return fail(format!("--kind {kind:?} is no kind of record"));
    };
    with_store(url, true, |store| {
        let chain = store.read_chain(&ChainId::Run(run.to_string()))?;
        let Some(record) = chain
            .iter()
            .find(|s| s.record.seq == seq && s.record.kind == kind && s.record.index == 0)
        else {
            return Ok(fail(format!(
                "run `{run}` has no {} record at seq {seq}",
                kind.name()
            )));
        };
        Ok(match log::prove(store, record) {
            Ok(proof) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&proof).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(why) => fail(why),
        })
    })
}

pub(super) fn check(file: &Path, trust: &[PathBuf]) -> ExitCode {
    let trust = match super::trust_of(trust) {
        Ok(Some(t)) => t,
        Ok(None) => return fail("--trust names no key"),
        Err(code) => return code,
    };
    let text = match read(file) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let proof: Proof = match serde_json::from_str(&text) {
        Ok(p) => p,
        Err(e) => return fail(format!("{}: not a proof file: {e}", file.display())),
    };
    match log::check_proof(&proof, trust) {
        Ok((record, head, signers)) => {
            let field = |k: &str| record.get(k).cloned().unwrap_or_default();
            println!(
                "verified: the {} record of run {} at seq {} is record {} of {} in the checkpoint of {} signed by {}",
                field("kind").as_str().unwrap_or("?"),
                field("run_id").as_str().unwrap_or("?"),
                field("seq"),
                proof.index,
                head.size,
                head.origin,
                signers.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(why) => fail(format!("{}: {why}", file.display())),
    }
}

pub(super) fn consistency(url: &str, old: &Path, new: &Path, trust: &[PathBuf]) -> ExitCode {
    let trust = match super::trust_of(trust) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut heads = Vec::new();
    for path in [old, new] {
        let note = match read(path) {
            Ok(t) => t,
            Err(code) => return code,
        };
        let parsed = match trust {
            Some(t) => Checkpoint::verify(&note, t).map(|(c, _)| c),
            None => Checkpoint::parse(&note).map(|(c, _)| c),
        };
        match parsed {
            Ok(c) => heads.push(c),
            Err(why) => return fail(format!("{}: {why}", path.display())),
        }
    }
    let [old_head, new_head] = &heads[..] else {
        return ExitCode::from(2);
    };
    with_store(url, true, |store| {
        Ok(match log::consistency(store, old_head, new_head) {
            Ok(hashes) => {
                println!(
                    "consistent: the tree of {} records extends the tree of {} ({hashes} hashes of proof)",
                    new_head.size, old_head.size
                );
                ExitCode::SUCCESS
            }
            Err(why) => {
                // Name the first record that gives the rewrite away, when its chain does.
                let first = match crate::evidence::audit::verify(store, None, None)? {
                    Err(problem) => format!("; the first altered record: {problem}"),
                    Ok(_) => "; every chain verifies on its own: records were cut off the end of a chain, or the store was rewritten with its hashes recomputed".into(),
                };
                fail(format!("{why}{first}"))
            }
        })
    })
}

pub(super) fn cosign(note: &Path, key: &Path) -> ExitCode {
    let (text, key) = match (read(note), SecretKey::read(key)) {
        (Ok(t), Ok(k)) => (t, k),
        (Err(code), _) => return code,
        (_, Err(e)) => return super::io_error(e),
    };
    let (head, _) = match Checkpoint::parse(&text) {
        Ok(c) => c,
        Err(why) => return fail(format!("{}: {why}", note.display())),
    };
    let mut out = text.trim_end_matches('\n').to_string();
    out.push('\n');
    if !out.contains("\n\n") {
        out.push('\n');
    }
    out.push_str(&Checkpoint::signature_line(&head.body(), &key));
    print!("{out}");
    ExitCode::SUCCESS
}
