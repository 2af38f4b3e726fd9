//! Deploys: by `PUT /v1/artifacts` and by replacing the watched artifact file; each is
//! verified first and recorded as a `deploy` record before it is answered.

use super::routes::Refusal;
use super::*;

use crate::base::wall::now_ns;

impl Server {
    /// Deploys an artifact and waits until its records are durable; returns the deploy
    /// record's body (`from`, `to`, `actor`, `ts`).
    pub(super) fn deploy(
        &self,
        artifact: Artifact,
        actor: &str,
    ) -> Result<serde_json::Value, Refusal> {
        let refuse = |status, why: String| Refusal(status, why);
        if self.metrics.store_down() {
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the evidence store is unavailable; a deploy is made only once its evidence can be made durable".into(),
            ));
        }
        warn_unset_env(&artifact);
        let (deployed, done) = {
            let mut replay = self.replay.lock().map_err(|_| {
                refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the runtime lock is poisoned".into(),
                )
            })?;
            let result = replay
                .deploy_artifact(artifact, now_ns(), actor)
                .map_err(|why| refuse(StatusCode::UNPROCESSABLE_ENTITY, why))?;
            let deployed = result
                .records
                .iter()
                .find(|r| r.kind == RecordKind::Deploy)
                .map(|r| r.body.clone())
                .unwrap_or_default();
            let (tx, rx) = oneshot::channel();
            let job = writer::Commit {
                records: Sealed::all(result.records),
                done: tx,
            };
            self.writer.send(job).map_err(|_| {
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the evidence writer stopped".into(),
                )
            })?;
            (deployed, rx)
        };
        match done.blocking_recv() {
            Ok(Committed::Stored | Committed::Spilled) => {}
            Ok(fate @ (Committed::Refused(_) | Committed::Lost(_))) => {
                let why = match fate {
                    Committed::Refused(e) => e.to_string(),
                    Committed::Lost(e) => e.to_string(),
                    _ => String::new(),
                };
                return Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the artifact is deployed, but its evidence could not be written: {why}"
                    ),
                ));
            }
            Err(_) => {
                return Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the evidence writer stopped".into(),
                ));
            }
        }
        Ok(deployed)
    }
}

impl Server {
    /// Records a refused deploy in the store chain (`deploy_refused`: who, when, why) and
    /// waits until it is durable.
    pub(super) fn record_refusal(&self, actor: &str, why: &str) -> Result<(), String> {
        let record = crate::evidence::deploy_refused(actor, why);
        let (tx, rx) = oneshot::channel();
        let job = writer::Commit {
            records: vec![Sealed::new(record)],
            done: tx,
        };
        self.writer
            .send(job)
            .map_err(|_| "the evidence writer stopped".to_string())?;
        match rx.blocking_recv() {
            Ok(Committed::Stored | Committed::Spilled) => Ok(()),
            _ => Err("the refusal could not be recorded".into()),
        }
    }
}

/// Watches the artifact file and deploys it when it is replaced (a new id); a file that
/// does not verify is reported and the active artifact stays.
pub(super) fn watch(server: std::sync::Weak<Server>, path: std::path::PathBuf) {
    let stamp = |p: &std::path::Path| {
        let of = |p: &std::path::Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        // The signature beside it too: a new `.sig` written after its artifact is seen.
        of(p).map(|a| (a, of(&crate::base::trust::signature_path(p))))
    };
    let mut last = stamp(&path);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let Some(server) = server.upgrade() else {
            return; // the server stopped
        };
        let now = stamp(&path);
        if now == last || now.is_none() {
            continue;
        }
        last = now;
        let loaded = crate::compile::load::load_file(&path, server.load).map_err(|e| e.to_string());
        match loaded {
            Ok(artifact) => {
                let current = server
                    .replay
                    .lock()
                    .ok()
                    .and_then(|r| r.current_engine().map(|e| e.artifact().id.clone()));
                if current.as_deref() == Some(artifact.id.as_str()) {
                    continue;
                }
                match server.deploy(artifact, "local-file") {
                    Ok(d) => eprintln!(
                        "lever: deployed {} (replaced on disk)",
                        d.get("to").cloned().unwrap_or_default()
                    ),
                    Err(Refusal(_, why)) => {
                        eprintln!("lever: {}: not deployed: {why}", path.display())
                    }
                }
            }
            Err(why) => {
                eprintln!("lever: {}: not deployed: {why}", path.display());
                let _ = server.record_refusal("local-file", &why);
            }
        }
    }
}
