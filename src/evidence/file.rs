//! The embedded file store: one append-only log of checksummed frames.
//!
//! Frame: the payload's length as a little-endian `u32`, the first 8 bytes of blake3 over
//! the payload, then the payload (a record's canonical bytes). Appends are written and
//! fsynced as one batch before `append` returns. Opening scans the log and indexes it; a
//! torn final frame (a crash mid-append) is cut off and reported on stderr, and a bad
//! frame anywhere else refuses the open: the store is never silently rewritten.

use super::{EvidenceStore, Record, RecordKey, StoreError};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const LOG: &str = "evidence.log";
const FRAME_HEADER: usize = 12;

pub struct FileStore {
    path: PathBuf,
    file: File,
    ids: HashSet<[u8; 32]>,
    places: HashMap<RecordKey, [u8; 32]>,
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let h = blake3::hash(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(h.as_bytes().get(..8).unwrap_or(&[0; 8]));
    out
}

impl FileStore {
    /// Opens (creating when missing) the store in `dir`.
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        let path = dir.join(LOG);
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (frames, good_len) = scan(&bytes, &path)?;
        if good_len < bytes.len() {
            eprintln!(
                "lever: evidence store {}: cut off a torn final frame ({} bytes at offset {good_len}) left by an interrupted write",
                path.display(),
                bytes.len() - good_len
            );
            file.set_len(good_len as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let mut store = FileStore {
            path,
            file,
            ids: HashSet::new(),
            places: HashMap::new(),
        };
        for (offset, payload) in frames {
            store.index(&payload, offset)?;
        }
        Ok(store)
    }

    fn index(&mut self, payload: &[u8], offset: usize) -> Result<(), StoreError> {
        let record = parse_record(payload).ok_or_else(|| StoreError::Corrupt {
            path: self.path.display().to_string(),
            offset: offset as u64,
            why: "a frame holds no evidence record".into(),
        })?;
        self.ids.insert(record.id());
        if let Some(key) = record.key() {
            self.places.insert(key, record.content_hash());
        }
        Ok(())
    }
}

/// Reads a stored record back from its canonical bytes.
pub fn parse_record(payload: &[u8]) -> Option<Record> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let kind = match v.get("kind")?.as_str()? {
        "artifact" => super::RecordKind::Artifact,
        "deploy" => super::RecordKind::Deploy,
        "snapshot" => super::RecordKind::Snapshot,
        "decision" => super::RecordKind::Decision,
        "signal" => super::RecordKind::Signal,
        "alert" => super::RecordKind::Alert,
        "alert_delivery" => super::RecordKind::AlertDelivery,
        "override" => super::RecordKind::Override,
        "rejected_input" => super::RecordKind::RejectedInput,
        "incident" => super::RecordKind::Incident,
        "run_summary" => super::RecordKind::RunSummary,
        _ => return None,
    };
    Some(Record {
        kind,
        artifact: v.get("artifact")?.as_str()?.to_string(),
        run_id: v.get("run_id")?.as_str().map(str::to_string),
        seq: v.get("seq")?.as_u64()?,
        index: u32::try_from(v.get("index")?.as_u64()?).ok()?,
        body: v.get("body")?.clone(),
    })
}

/// Splits the log into payloads; returns them and the length of the intact prefix. Only a
/// frame that runs past the end of the file is torn; any other damage is an error.
/// Frames found by a scan: each payload with the byte offset of its frame.
type Frames = Vec<(usize, Vec<u8>)>;

fn scan(bytes: &[u8], path: &Path) -> Result<(Frames, usize), StoreError> {
    let mut frames = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + FRAME_HEADER) else {
            return Ok((frames, at)); // torn header at the end
        };
        let (len_bytes, sum) = header.split_at(4);
        let len = u32::from_le_bytes(len_bytes.try_into().unwrap_or([0; 4])) as usize;
        let Some(payload) = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + len) else {
            return Ok((frames, at)); // torn payload at the end
        };
        if checksum(payload) != sum {
            let last = at + FRAME_HEADER + len == bytes.len();
            if last {
                return Ok((frames, at)); // a final frame whose bytes never all reached the disk
            }
            return Err(StoreError::Corrupt {
                path: path.display().to_string(),
                offset: at as u64,
                why: "checksum mismatch".into(),
            });
        }
        frames.push((at, payload.to_vec()));
        at += FRAME_HEADER + len;
    }
    Ok((frames, at))
}

impl EvidenceStore for FileStore {
    fn contains(&self, id: &[u8; 32]) -> bool {
        self.ids.contains(id)
    }

    fn content_at(&self, key: &RecordKey) -> Option<[u8; 32]> {
        self.places.get(key).copied()
    }

    fn append(&mut self, records: &[Record]) -> Result<usize, StoreError> {
        let mut batch = Vec::new();
        let mut fresh = Vec::new();
        let mut fresh_ids: HashSet<[u8; 32]> = HashSet::new();
        for r in records {
            let id = r.id();
            if self.ids.contains(&id) || !fresh_ids.insert(id) {
                continue;
            }
            let payload = r.canonical_bytes();
            let len = u32::try_from(payload.len()).map_err(|_| StoreError::Corrupt {
                path: self.path.display().to_string(),
                offset: 0,
                why: "record larger than 4 GiB".into(),
            })?;
            batch.extend_from_slice(&len.to_le_bytes());
            batch.extend_from_slice(&checksum(&payload));
            batch.extend_from_slice(&payload);
            fresh.push((id, r));
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let io = |source| StoreError::Io {
            path: self.path.display().to_string(),
            source,
        };
        self.file.write_all(&batch).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        for (id, r) in &fresh {
            self.ids.insert(*id);
            if let Some(key) = r.key() {
                self.places.insert(key, r.content_hash());
            }
        }
        Ok(fresh.len())
    }

    fn read_all(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let bytes = std::fs::read(&self.path).map_err(|source| StoreError::Io {
            path: self.path.display().to_string(),
            source,
        })?;
        Ok(scan(&bytes, &self.path)?
            .0
            .into_iter()
            .map(|(_, payload)| payload)
            .collect())
    }
}
