//! `lever evidence`: verify, digest and show, over either store.

use crate::cli::{EvidenceCommand, Format};
use crate::evidence::{self, ChainId, EvidenceStore, audit};
use std::io::Write;
use std::process::ExitCode;

pub(crate) fn run(command: EvidenceCommand) -> ExitCode {
    match command {
        EvidenceCommand::Verify {
            run,
            digest,
            evidence,
        } => with_store(&evidence, true, |store| {
            verify(store, run.as_deref(), digest.as_deref())
        }),
        EvidenceCommand::Digest { evidence } => with_store(&evidence, false, digest),
        EvidenceCommand::Migrate {
            evidence,
            writer_role,
            auditor_role,
            no_roles,
        } => migrate(&evidence, writer_role, auditor_role, no_roles),
        EvidenceCommand::Show {
            run,
            store: _,
            kind,
            format,
            evidence,
        } => with_store(&evidence, true, |store| {
            let chain = run.map_or(ChainId::Store, ChainId::Run);
            show(store, &chain, kind.as_deref(), format)
        }),
        EvidenceCommand::List { format, evidence } => {
            with_store(&evidence, true, |store| list(store, format))
        }
        EvidenceCommand::Checkpoint {
            sign,
            origin,
            evidence,
        } => super::checkpoint::take(&evidence, sign.as_deref(), &origin),
        EvidenceCommand::Prove {
            run,
            seq,
            kind,
            evidence,
        } => super::checkpoint::prove(&evidence, &run, seq, &kind),
        EvidenceCommand::CheckProof { file, trust } => super::checkpoint::check(&file, &trust),
        EvidenceCommand::Consistency {
            old,
            new,
            trust,
            evidence,
        } => super::checkpoint::consistency(&evidence, &old, &new, &trust),
        EvidenceCommand::Cosign { note, sign } => super::checkpoint::cosign(&note, &sign),
        EvidenceCommand::Budgets { format, evidence } => {
            with_store(&evidence, true, |store| budgets(store, format))
        }
    }
}

/// Every budget counter: policy, monitor, key values, window and value.
fn budgets(
    store: &mut dyn EvidenceStore,
    format: Format,
) -> Result<ExitCode, evidence::StoreError> {
    let rows = store.counter_rows()?;
    let mut out = std::io::stdout().lock();
    let written = rows.iter().try_for_each(|r| {
        let value = crate::base::num::Decimal(r.value).to_string();
        let line = match format {
            Format::Human => format!(
                "{} {} {} {} {value}\n",
                r.policy,
                r.monitor,
                r.per,
                r.window_start.as_deref().unwrap_or("(no window)")
            ),
            Format::Json => format!(
                "{}\n",
                serde_json::json!({
                    "policy": r.policy,
                    "limit": r.monitor,
                    "per": serde_json::from_str::<serde_json::Value>(&r.per).unwrap_or_default(),
                    "window_start": r.window_start,
                    "value": value,
                })
            ),
        };
        out.write_all(line.as_bytes())
    });
    if rows.is_empty() && format == Format::Human {
        eprintln!("the store holds no budget counter");
    }
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(evidence::StoreError::Io {
            path: "standard output".into(),
            source: e,
        }),
    }
}

/// `lever evidence list`: every run with its state, and the store chain by kind.
fn list(store: &mut dyn EvidenceStore, format: Format) -> Result<ExitCode, evidence::StoreError> {
    let listing = evidence::listing::list(store)?;
    let text = match format {
        Format::Json => format!("{}\n", serde_json::to_string(&listing).unwrap_or_default()),
        Format::Human => {
            let mut out = format!(
                "{:<24}  {:<8}  {:>9}  LAST TS\n",
                "RUN", "STATE", "DECISIONS"
            );
            for r in &listing.runs {
                let ts = r.last_ts.as_deref().unwrap_or("-");
                out.push_str(&format!(
                    "{:<24}  {:<8}  {:>9}  {ts}\n",
                    r.run_id, r.state, r.decisions
                ));
            }
            let chain: Vec<String> = listing
                .store_chain
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            let runs = listing.runs.len();
            out.push_str(&format!(
                "{runs} run{}; store chain: {}\n",
                if runs == 1 { "" } else { "s" },
                if chain.is_empty() {
                    "empty".to_string()
                } else {
                    chain.join(", ")
                }
            ));
            out
        }
    };
    let mut out = std::io::stdout().lock();
    Ok(
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(2),
        },
    )
}

/// Opens the store (read-only for an audit) and runs `f` on it.
pub(super) fn with_store(
    url: &str,
    audit: bool,
    f: impl FnOnce(&mut dyn EvidenceStore) -> Result<ExitCode, evidence::StoreError>,
) -> ExitCode {
    let opened = if audit {
        evidence::open_for_audit(url)
    } else {
        evidence::open(url)
    };
    let result = opened.and_then(|mut store| f(store.as_mut()));
    match result {
        Ok(code) => code,
        // A store too damaged to open is a failed verification, not an I/O error.
        Err(e @ evidence::StoreError::Corrupt { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn migrate(url: &str, writer: Option<String>, auditor: Option<String>, no_roles: bool) -> ExitCode {
    use crate::evidence::postgres::migrate::{self, Roles};
    if url.starts_with("file:") {
        println!("a file store needs no migration: `lever run` and `lever serve` create it");
        return ExitCode::SUCCESS;
    }
    let roles = match migrate::schema_name(url) {
        Ok(schema) => {
            let defaults = Roles::for_schema(&schema);
            Roles {
                writer: writer.unwrap_or(defaults.writer),
                auditor: auditor.unwrap_or(defaults.auditor),
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match migrate::migrate(url, (!no_roles).then_some(&roles)) {
        Ok(done) => {
            for line in done {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn verify(
    store: &mut dyn EvidenceStore,
    run: Option<&str>,
    digest: Option<&str>,
) -> Result<ExitCode, evidence::StoreError> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last = std::time::Instant::now();
    let mut progress = |done: u64, total: u64| {
        if tty && (last.elapsed().as_millis() >= 200 || done == total) {
            last = std::time::Instant::now();
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            eprint!("\rverifying: {pct:>3}%");
            if done == total {
                eprintln!();
            }
        }
    };
    Ok(
        match audit::verify_with_progress(store, run, digest, &mut progress)? {
            Ok(v) if v.records == 0 => {
                eprintln!("error: the store holds no evidence: nothing to verify");
                ExitCode::from(1)
            }
            Ok(v) => {
                let covered = digest.map_or(String::new(), |d| {
                    format!("; everything digest {d} covered is intact")
                });
                println!(
                    "verified: {} records in {} chains{covered}",
                    v.records, v.chains
                );
                ExitCode::SUCCESS
            }
            Err(problem) => {
                eprintln!("error: verification failed: {problem}");
                ExitCode::from(1)
            }
        },
    )
}

fn digest(store: &mut dyn EvidenceStore) -> Result<ExitCode, evidence::StoreError> {
    Ok(match audit::digest(store)? {
        Ok(d) => {
            println!("{d}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("error: no digest: the store does not verify: {problem}");
            ExitCode::from(1)
        }
    })
}

fn show(
    store: &mut dyn EvidenceStore,
    chain: &ChainId,
    kind: Option<&str>,
    format: Format,
) -> Result<ExitCode, evidence::StoreError> {
    let wanted = match kind.map(|k| (k, evidence::RecordKind::from_name(k))) {
        Some((k, None)) => {
            eprintln!("error: --kind {k:?} is no kind of record (see docs/evidence.md)");
            return Ok(ExitCode::from(2));
        }
        Some((_, Some(kind))) => Some(kind),
        None => None,
    };
    let all = store.read_chain(chain)?;
    let records: Vec<_> = all
        .iter()
        .filter(|s| wanted.is_none_or(|k| s.record.kind == k))
        .cloned()
        .collect();
    if records.is_empty() {
        match (chain, all.len()) {
            (ChainId::Run(run), 0) => eprintln!("error: the store holds no record of run `{run}`"),
            (ChainId::Store, 0) => eprintln!("error: the store chain holds no record"),
            _ => eprintln!(
                "error: {chain} holds no {} record",
                kind.unwrap_or_default()
            ),
        }
        return Ok(ExitCode::from(1));
    }
    let mut out = std::io::stdout().lock();
    let written = match format {
        Format::Human => out.write_all(audit::show_text(&all, &records).as_bytes()),
        Format::Json => records.iter().try_for_each(|s| {
            out.write_all(&s.to_bytes())?;
            out.write_all(b"\n")
        }),
    };
    Ok(if written.and_then(|()| out.flush()).is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
