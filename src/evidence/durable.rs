//! Writing through a store outage: a queue in front of a store, bounded in bytes, with a
//! local spill file that makes queued records durable before they are acknowledged.
//!
//! Records are queued, then everything queued is written oldest first. When the store
//! fails, the records stay queued and are appended to the spill file (fsynced) so that a
//! process killed during the outage loses nothing it answered; the store is dropped and
//! the next write reopens it from its URL, so that what the store holds is read back from
//! its own truth before anything more is written (ids make writes idempotent). The first
//! failure queues an `outage` record (`"event":"start"`) in front of the queue, and the
//! first write after it appends one with `"event":"end"`: the store chain shows the gap.
//! A process started with records in the spill writes them first.

use super::file::segment_frames;
use super::{EvidenceStore, Record, RecordKind, Sealed, StoreError, open};
use crate::base::wall::now_ns;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a write was not made durable in the store.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The store is unavailable; the records are queued and written first when it
    /// returns. `spilled`: the spill file holds them, so a crash loses nothing.
    #[error("{error} ({queued} records queued)")]
    Unavailable {
        error: StoreError,
        queued: usize,
        spilled: bool,
    },
    /// The queue is full: these records were not queued, and nothing holds them.
    #[error("the evidence queue is full ({queued} bytes wait for the store, the limit is {limit})")]
    QueueFull { queued: usize, limit: usize },
    /// The store is unavailable and the spill file could not take the records: they were
    /// not queued, and nothing holds them.
    #[error("the evidence store is unavailable and the spill file {path} failed: {source}")]
    SpillFailed {
        path: String,
        source: std::io::Error,
    },
    /// The store is unavailable and the records could not be spilled (`cause` says why the
    /// store is unavailable, or that no spill file is set): nothing holds them.
    #[error("the evidence store is unavailable ({cause}) and the records could not be spilled")]
    NotSpilled { cause: String },
    /// The store refused the records themselves (a closed chain, a contradiction): not an
    /// outage, and retrying will not help.
    #[error(transparent)]
    Refused(StoreError),
}

/// What became of one group of records (one request's) given to [`Durable::commit_groups`].
#[derive(Debug)]
pub(crate) enum Committed {
    /// Durable in the store.
    Stored,
    /// The store is unavailable: durable in the spill file, and written to the store, in
    /// order, when it returns.
    Spilled,
    /// The store refused them (they contradict what it holds, or another writer extended
    /// their chain first): nothing holds them.
    Refused(StoreError),
    /// Neither the store nor the spill file holds them.
    Lost(WriteError),
}

impl Committed {}

/// The spill file: frames of queued records' canonical bytes.
struct Spill {
    path: PathBuf,
    file: std::fs::File,
}

pub struct Durable {
    url: String,
    store: Option<Box<dyn EvidenceStore>>,
    queue: Vec<Sealed>,
    queued_bytes: usize,
    capacity_bytes: usize,
    spill: Option<Spill>,
    /// Since when (Unix nanoseconds of the wall clock) the store has been unavailable.
    outage: Option<i64>,
    /// Records written since the outage began, for its end record.
    written_late: usize,
}

fn outage_record(event: &str, at: i64, extra: serde_json::Value) -> Record {
    let mut body = serde_json::json!({
        "event": event,
        "at": crate::base::format::timestamp(at),
    });
    if let (Some(map), serde_json::Value::Object(more)) = (body.as_object_mut(), extra) {
        map.extend(more);
    }
    Record {
        kind: RecordKind::Outage,
        artifact: String::new(),
        run_id: None,
        seq: 0,
        index: 0,
        body,
    }
}

impl Durable {
    /// Opens the store; it must be available at the start. `capacity_bytes` bounds the
    /// queue; `spill` names the spill file, whose records (left by a process that stopped
    /// during an outage) are written first.
    pub fn open(
        url: &str,
        capacity_bytes: usize,
        spill: Option<&Path>,
    ) -> Result<Durable, StoreError> {
        let mut durable = Durable {
            url: url.to_string(),
            store: Some(open(url)?),
            queue: Vec::new(),
            queued_bytes: 0,
            capacity_bytes,
            spill: None,
            outage: None,
            written_late: 0,
        };
        if let Some(path) = spill {
            let left = read_spill(path)?;
            if !left.is_empty() {
                eprintln!(
                    "lever: {}: writing {} records left from an earlier outage",
                    path.display(),
                    left.len()
                );
                durable.queued_bytes = left.iter().map(|r| r.canonical().len()).sum();
                // The outage these records waited through ends when they are written.
                durable.outage = Some(
                    left.first()
                        .map(Sealed::record)
                        .filter(|r| r.kind == RecordKind::Outage)
                        .and_then(|r| r.body.get("at")?.as_str())
                        .and_then(crate::base::format::parse_timestamp)
                        .unwrap_or_else(now_ns),
                );
                durable.queue = left;
            }
            durable.spill = Some(open_spill(path)?);
            if !durable.queue.is_empty() {
                durable.flush().map_err(|e| StoreError::Database {
                    url: super::postgres::redact(url),
                    why: format!(
                        "the records left in {} could not be written: {e}",
                        path.display()
                    ),
                })?;
            }
        }
        Ok(durable)
    }

    /// The store, if it is open (it is not during an outage).
    pub(crate) fn store(&mut self) -> Option<&mut (dyn EvidenceStore + 'static)> {
        self.store.as_deref_mut()
    }

    /// Records waiting for the store, oldest first.
    pub fn queued(&self) -> &[Sealed] {
        &self.queue
    }

    /// Bytes waiting for the store.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Whether the store is in an outage.
    pub(crate) fn in_outage(&self) -> bool {
        self.outage.is_some()
    }

    /// Queues `records` and writes everything queued; `Ok` once all of it is durable.
    pub fn append(&mut self, records: Vec<Sealed>) -> Result<usize, WriteError> {
        self.enqueue(records)?;
        self.flush()
    }

    /// Queues `records` without writing; during an outage they are spilled (fsynced) first.
    /// An error when the queue or the spill cannot take them all: then none are queued.
    pub(crate) fn enqueue(&mut self, records: Vec<Sealed>) -> Result<(), WriteError> {
        let bytes: usize = records.iter().map(|r| r.canonical().len()).sum();
        if self.queued_bytes + bytes > self.capacity_bytes && !records.is_empty() {
            return Err(WriteError::QueueFull {
                queued: self.queued_bytes,
                limit: self.capacity_bytes,
            });
        }
        if self.outage.is_some() {
            self.spill_records(&records)?;
        }
        self.queued_bytes += bytes;
        self.queue.extend(records);
        Ok(())
    }

    /// Appends records to the spill file and fsyncs it.
    fn spill_records(&mut self, records: &[Sealed]) -> Result<(), WriteError> {
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        let frames = segment_frames(records.iter().map(Sealed::canonical));
        let written = spill
            .file
            .write_all(&frames)
            .and_then(|()| spill.file.sync_data());
        written.map_err(|source| WriteError::SpillFailed {
            path: spill.path.display().to_string(),
            source,
        })
    }

    /// Takes every queued record back out of the queue (after a [`WriteError::Refused`],
    /// to write the records of a group one part at a time).
    pub(crate) fn take_queued(&mut self) -> Vec<Sealed> {
        self.queued_bytes = 0;
        std::mem::take(&mut self.queue)
    }

    /// Writes everything queued, reopening the store if an outage closed it.
    pub(crate) fn flush(&mut self) -> Result<usize, WriteError> {
        self.flush_queue(false)
    }

    /// Writes the queue; `exclusive`: the records were just judged here, so a record of a
    /// run already stored means another writer judged that event ([`StoreError::Fenced`]).
    fn flush_queue(&mut self, exclusive: bool) -> Result<usize, WriteError> {
        if self.store.is_none() {
            match open(&self.url) {
                Ok(s) => self.store = Some(s),
                Err(e) => return Err(self.unavailable(e)),
            }
        }
        let Some(store) = self.store.as_mut() else {
            return Ok(0);
        };
        let appended = if exclusive {
            store.append_exclusive(&self.queue)
        } else {
            store.append(&self.queue)
        };
        match appended {
            Ok(n) => {
                self.queue.clear();
                self.queued_bytes = 0;
                self.end_outage(n)?;
                Ok(n)
            }
            Err(
                e @ (StoreError::ChainClosed(_)
                | StoreError::Contradicts(_)
                | StoreError::Fenced(_)
                | StoreError::BudgetMoved(_)),
            ) => {
                // Nothing was written; the queue stays as it was for the caller to report.
                Err(WriteError::Refused(e))
            }
            Err(e) => {
                // Never write through a store after a failure: reopen it next time.
                self.store = None;
                Err(self.unavailable(e))
            }
        }
    }

    /// The store failed: the outage starts (its record first in the queue) if it had not,
    /// and everything queued is spilled; what the spill cannot take is dropped from the
    /// queue (`spilled: false`), so that the queue holds only what is durable somewhere.
    fn unavailable(&mut self, error: StoreError) -> WriteError {
        if self.outage.is_some() {
            // Everything queued during the outage was spilled as it came.
            return WriteError::Unavailable {
                error,
                queued: self.queue.len(),
                spilled: self.spill.is_some(),
            };
        }
        let at = now_ns();
        self.outage = Some(at);
        self.written_late = 0;
        let start = Sealed::new(outage_record(
            "start",
            at,
            serde_json::json!({"error": error.to_string()}),
        ));
        let mut unspilled = std::mem::take(&mut self.queue);
        unspilled.insert(0, start);
        let spilled = match self.spill_records(&unspilled) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("lever: {e}");
                false
            }
        };
        if spilled || self.spill.is_none() {
            self.queue = unspilled;
        } else {
            // Only what is durable somewhere stays queued (the outage's start is kept).
            self.queue = unspilled.into_iter().take(1).collect();
            self.queued_bytes = self.queue.iter().map(|r| r.canonical().len()).sum();
        }
        WriteError::Unavailable {
            error,
            queued: self.queue.len(),
            spilled: spilled && self.spill.is_some(),
        }
    }

    /// Commits groups of records (one per request) together; what became of each. A group
    /// the store refuses fails alone: the others are committed without it.
    pub(crate) fn commit_groups(&mut self, groups: Vec<Vec<Sealed>>) -> Vec<Committed> {
        if self.outage.is_some() {
            return groups.into_iter().map(|g| self.spill_group(g)).collect();
        }
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        let mut fates: Vec<Committed> = groups
            .into_iter()
            .map(|group| match self.enqueue(group) {
                Ok(()) => Committed::Stored,
                Err(e) => Committed::Lost(e),
            })
            .collect();
        match self.flush_queue(true) {
            Ok(_) => {}
            Err(WriteError::Unavailable { spilled, error, .. }) => {
                for fate in fates.iter_mut().filter(|f| matches!(f, Committed::Stored)) {
                    *fate = outage_fate(spilled, &error);
                }
            }
            Err(_) => {
                // A group contradicts the store: commit them one at a time.
                let mut queued = self.take_queued().into_iter();
                for (fate, size) in fates.iter_mut().zip(sizes) {
                    if matches!(fate, Committed::Stored) {
                        let group: Vec<Sealed> = queued.by_ref().take(size).collect();
                        *fate = self.commit_one(group);
                    }
                }
            }
        }
        fates
    }

    fn commit_one(&mut self, group: Vec<Sealed>) -> Committed {
        if self.outage.is_some() {
            return self.spill_group(group);
        }
        if let Err(e) = self.enqueue(group) {
            return Committed::Lost(e);
        }
        match self.flush_queue(true) {
            Ok(_) => Committed::Stored,
            Err(WriteError::Refused(e)) => {
                self.take_queued();
                Committed::Refused(e)
            }
            Err(WriteError::Unavailable { spilled, error, .. }) => outage_fate(spilled, &error),
            Err(e) => Committed::Lost(e),
        }
    }

    /// During an outage: queues and spills a group.
    fn spill_group(&mut self, group: Vec<Sealed>) -> Committed {
        match self.enqueue(group) {
            Ok(()) if self.spill.is_some() => Committed::Spilled,
            Ok(()) => Committed::Lost(WriteError::NotSpilled {
                cause: "no spill file is set".into(),
            }),
            Err(e) => Committed::Lost(e),
        }
    }

    /// Tries the store again during an outage: `Ok` once everything queued is written.
    pub(crate) fn retry(&mut self) -> Result<usize, WriteError> {
        self.flush()
    }

    /// After the queue is written: the outage's end is recorded and the spill emptied.
    fn end_outage(&mut self, written: usize) -> Result<(), WriteError> {
        let Some(started) = self.outage else {
            return Ok(());
        };
        self.written_late += written;
        let end = outage_record(
            "end",
            now_ns(),
            serde_json::json!({
                "started": crate::base::format::timestamp(started),
                "records_written_late": self.written_late,
            }),
        );
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        match store.append(&[Sealed::new(end)]) {
            Ok(_) => {
                self.outage = None;
                if let Some(spill) = self.spill.as_mut() {
                    let emptied = spill.file.set_len(0).and_then(|()| spill.file.sync_all());
                    if let Err(e) = emptied {
                        eprintln!("lever: {}: could not be emptied: {e}", spill.path.display());
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.store = None;
                Err(WriteError::Unavailable {
                    error: e,
                    queued: self.queue.len(),
                    spilled: self.spill.is_some(),
                })
            }
        }
    }
}

fn outage_fate(spilled: bool, error: &StoreError) -> Committed {
    if spilled {
        Committed::Spilled
    } else {
        Committed::Lost(WriteError::NotSpilled {
            cause: error.to_string(),
        })
    }
}

fn spill_error(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn open_spill(path: &Path) -> Result<Spill, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(spill_error(dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(spill_error(path))?;
    Ok(Spill {
        path: path.to_path_buf(),
        file,
    })
}

/// The records of a spill file; a torn final frame (never acknowledged) is left out.
fn read_spill(path: &Path) -> Result<Vec<Sealed>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(spill_error(path)(e)),
    };
    let (frames, _) = super::file::scan_frames(&bytes);
    frames
        .into_iter()
        .map(|(offset, payload)| {
            serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| super::chain::record_of(&v))
                .map(Sealed::new)
                .ok_or_else(|| StoreError::Corrupt {
                    path: path.display().to_string(),
                    offset: offset as u64,
                    why: "a spilled frame holds no record".into(),
                })
        })
        .collect()
}
