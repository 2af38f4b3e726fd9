//! The embedded file store: append-only segment files of checksummed frames.
//!
//! `DIR/evidence-NNNNNN.log`, numbered from 0; a new segment starts when the current one
//! passes [`SEGMENT_BYTES`]. Frame: the payload's length as a little-endian `u32`, the
//! CRC-32 (IEEE) of the payload as a little-endian `u32`, then the payload (a stored record: see
//! [`super::chain::Stored::to_bytes`]). An append is one write and one fsync of its batch
//! (the group commit) before it returns.
//!
//! Opening scans every segment and indexes it. A torn final frame of the last segment (a
//! crash mid-append) is cut off, reported on stderr and recorded as a `recovery` record in
//! the store chain; a bad frame anywhere else refuses the open: the store is never silently
//! rewritten. After a failed write or fsync the store refuses every later call.

use super::chain::{self, ChainId, Head, Stored};
use super::{EvidenceStore, IdSet, Record, RecordKey, RecordKind, StoreError};
use crate::runtime::Fnv1a;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::hash::BuildHasherDefault;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const FRAME_HEADER: usize = 8;
/// A segment is closed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 << 20;

pub struct FileStore {
    dir: PathBuf,
    /// The segment being appended to: its number, file and length.
    segment: u32,
    file: File,
    len: u64,
    ids: IdSet,
    places: HashMap<RecordKey, [u8; 32], BuildHasherDefault<Fnv1a>>,
    heads: HashMap<ChainId, Head>,
    failed: bool,
    fail_next_sync: bool,
}

/// The frame checksum: it finds torn and damaged frames; tampering is the hash chain's job.
fn checksum(payload: &[u8]) -> [u8; 4] {
    crc32fast::hash(payload).to_le_bytes()
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("evidence-{n:06}.log"))
}

/// The segment numbers present in `dir`, in order; they must be 0, 1, 2, ... .
fn segments(dir: &Path) -> Result<Vec<u32>, StoreError> {
    let io = |source| StoreError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut found: Vec<u32> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("evidence-")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    for (i, n) in found.iter().enumerate() {
        if usize::try_from(*n).ok() != Some(i) {
            return Err(StoreError::Corrupt {
                path: segment_path(dir, u32::try_from(i).unwrap_or(u32::MAX))
                    .display()
                    .to_string(),
                offset: 0,
                why: "this segment is missing (the segments must be numbered without gaps)".into(),
            });
        }
    }
    Ok(found)
}

impl FileStore {
    /// Opens (creating when missing) the store in `dir`, cutting off a torn final frame.
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        FileStore::open_mode(dir, false)
    }

    /// Opens an existing store for reading only, as an audit does: nothing is created or
    /// cut, and a torn or damaged final frame is reported as corruption like any other.
    pub fn open_read_only(dir: &Path) -> Result<FileStore, StoreError> {
        FileStore::open_mode(dir, true)
    }

    fn open_mode(dir: &Path, read_only: bool) -> Result<FileStore, StoreError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| StoreError::Io { path, source }
        };
        if read_only {
            std::fs::metadata(dir).map_err(io(dir))?;
        } else {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut numbers = segments(dir)?;
        if numbers.is_empty() {
            numbers.push(0);
        }
        let last = numbers.last().copied().unwrap_or(0);
        let mut store: Option<FileStore> = None;
        let mut cut: Option<(PathBuf, usize, usize)> = None;
        let mut all = Vec::new();
        for &n in &numbers {
            let path = segment_path(dir, n);
            let mut file = OpenOptions::new()
                .read(true)
                .append(!read_only)
                .create(!read_only)
                .open(&path)
                .map_err(io(&path))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io(&path))?;
            let (frames, good_len) = scan(&bytes, &path)?;
            if good_len < bytes.len() {
                if read_only {
                    return Err(StoreError::Corrupt {
                        path: path.display().to_string(),
                        offset: good_len as u64,
                        why: format!(
                            "the final frame ({} bytes) is torn or damaged; a crash mid-write leaves this, and the next `lever run` cuts it off and records a recovery",
                            bytes.len() - good_len
                        ),
                    });
                }
                if n != last {
                    return Err(StoreError::Corrupt {
                        path: path.display().to_string(),
                        offset: good_len as u64,
                        why: "a torn frame before the last segment".into(),
                    });
                }
                file.set_len(good_len as u64).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
                cut = Some((path.clone(), good_len, bytes.len() - good_len));
            }
            for (offset, payload) in frames {
                let stored = Stored::from_bytes(&payload).ok_or_else(|| StoreError::Corrupt {
                    path: path.display().to_string(),
                    offset: offset as u64,
                    why: "a frame holds no evidence record".into(),
                })?;
                all.push(stored);
            }
            if n == last {
                store = Some(FileStore {
                    dir: dir.to_path_buf(),
                    segment: n,
                    file,
                    len: good_len as u64,
                    ids: IdSet::default(),
                    places: HashMap::default(),
                    heads: HashMap::new(),
                    failed: read_only,
                    fail_next_sync: false,
                });
            }
        }
        let Some(mut store) = store else {
            return Err(StoreError::BadUrl(dir.display().to_string()));
        };
        for stored in &all {
            store.index(stored);
        }
        if let Some((path, offset, bytes)) = cut {
            eprintln!(
                "lever: evidence store {}: cut off a torn final frame ({bytes} bytes at offset {offset}) left by an interrupted write",
                path.display()
            );
            let recovery = Record {
                kind: RecordKind::Recovery,
                artifact: String::new(),
                run_id: None,
                seq: 0,
                index: 0,
                body: serde_json::json!({
                    "segment": path.file_name().map(|f| f.to_string_lossy().into_owned()),
                    "offset": offset,
                    "bytes_cut": bytes,
                    "previous_store_head": chain::hex(&store.heads.get(&ChainId::Store).map_or([0; 32], |h| h.hash)),
                }),
            };
            store.append(&[recovery])?;
        }
        Ok(store)
    }

    fn index(&mut self, stored: &Stored) {
        let r = &stored.record;
        self.ids.insert(r.id());
        if let Some(key) = r.key() {
            self.places.insert(key, r.content_hash());
        }
        self.heads.insert(r.chain(), Head::after(stored));
    }

    /// Makes the next fsync fail, as a full or failing disk would: for tests of the rule
    /// that a store acknowledges nothing after a failed write.
    #[doc(hidden)]
    pub fn inject_sync_failure(&mut self) {
        self.fail_next_sync = true;
    }

    fn stopped(&self) -> StoreError {
        StoreError::Stopped(self.dir.display().to_string())
    }

    fn write_batch(&mut self, batch: &[u8]) -> Result<(), StoreError> {
        if self.len >= SEGMENT_BYTES {
            let next = self.segment.saturating_add(1);
            let path = segment_path(&self.dir, next);
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|source| StoreError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
            // The new segment's directory entry must be durable before records rely on it.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| StoreError::Io {
                    path: self.dir.display().to_string(),
                    source,
                })?;
            self.segment = next;
            self.file = file;
            self.len = 0;
        }
        let path = segment_path(&self.dir, self.segment);
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        self.file.write_all(batch).map_err(io)?;
        if std::mem::take(&mut self.fail_next_sync) {
            return Err(io(std::io::Error::other("fsync failed (injected)")));
        }
        self.file.sync_data().map_err(io)?;
        self.len += batch.len() as u64;
        Ok(())
    }
}

/// Frames found by a scan: each payload with the byte offset of its frame.
type Frames = Vec<(usize, Vec<u8>)>;

/// Splits a segment into payloads; returns them and the length of the intact prefix. Only
/// a frame that runs past the end of the file (or the last frame, with a bad checksum) is
/// torn; any other damage is an error.
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
    fn first_conflict(&mut self, records: &[Record]) -> Result<Option<RecordKey>, StoreError> {
        Ok(records.iter().find_map(|r| {
            let key = r.key()?;
            let stored = self.places.get(&key)?;
            (*stored != r.content_hash()).then_some(key)
        }))
    }

    fn append(&mut self, records: &[Record]) -> Result<usize, StoreError> {
        if self.failed {
            return Err(self.stopped());
        }
        let mut fresh = Vec::new();
        let mut keys = Vec::new();
        let mut fresh_ids = IdSet::default();
        let mut fresh_places: HashMap<RecordKey, &Record> = HashMap::new();
        for r in records {
            let id = r.id();
            let key = r.key();
            // A place already taken (in the store or earlier in this batch) must hold this
            // very content: an id names a place, not a content, so it is compared first.
            let taken = key.as_ref().and_then(|k| {
                self.places
                    .get(k)
                    .copied()
                    .or_else(|| fresh_places.get(k).map(|earlier| earlier.content_hash()))
            });
            if let Some(stored) = taken {
                if stored != r.content_hash() {
                    return Err(StoreError::Contradicts(
                        key.map(|k| {
                            format!("run `{}` seq {} ({})", k.run_id, k.seq, k.kind.name())
                        })
                        .unwrap_or_default(),
                    ));
                }
                continue;
            }
            if self.ids.contains(&id) || !fresh_ids.insert(id) {
                continue;
            }
            if let Some(k) = &key {
                fresh_places.insert(k.clone(), r);
            }
            fresh.push((r, id));
            keys.push(key);
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut heads: HashMap<ChainId, Head> = fresh
            .iter()
            .map(|(r, _)| r.chain())
            .collect::<HashSet<_>>()
            .into_iter()
            .filter_map(|c| Some((c.clone(), *self.heads.get(&c)?)))
            .collect();
        let linked = chain::link(&mut heads, fresh)?;
        let mut batch = Vec::with_capacity(linked.iter().map(|l| l.canonical.len() + 200).sum());
        for l in &linked {
            // The header is patched in once the payload is in place.
            let start = batch.len();
            batch.extend_from_slice(&[0; FRAME_HEADER]);
            chain::push_stored_bytes(&mut batch, &l.canonical, l.n, &l.prev, &l.hash);
            let payload = batch.get(start + FRAME_HEADER..).unwrap_or_default();
            let len = u32::try_from(payload.len()).map_err(|_| StoreError::Corrupt {
                path: self.dir.display().to_string(),
                offset: 0,
                why: "record larger than 4 GiB".into(),
            })?;
            let sum = checksum(payload);
            let mut header = [0u8; FRAME_HEADER];
            let (len_part, sum_part) = header.split_at_mut(4);
            len_part.copy_from_slice(&len.to_le_bytes());
            sum_part.copy_from_slice(&sum);
            if let Some(slot) = batch.get_mut(start..start + FRAME_HEADER) {
                slot.copy_from_slice(&header);
            }
        }
        if let Err(e) = self.write_batch(&batch) {
            self.failed = true;
            return Err(e);
        }
        self.ids.reserve(linked.len());
        for (l, key) in linked.iter().zip(keys) {
            self.ids.insert(l.id);
            if let Some(key) = key {
                self.places.insert(key, l.content);
            }
        }
        self.heads.extend(heads);
        Ok(linked.len())
    }

    fn read_all(&mut self) -> Result<Vec<Stored>, StoreError> {
        let mut all = Vec::new();
        for n in segments(&self.dir)? {
            let path = segment_path(&self.dir, n);
            let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })?;
            for (offset, payload) in scan(&bytes, &path)?.0 {
                all.push(
                    Stored::from_bytes(&payload).ok_or_else(|| StoreError::Corrupt {
                        path: path.display().to_string(),
                        offset: offset as u64,
                        why: "a frame holds no evidence record".into(),
                    })?,
                );
            }
        }
        // Chain by chain; within a chain, in the order stored (a stable sort).
        all.sort_by_key(|s| s.record.chain());
        Ok(all)
    }

    fn read_chain(&mut self, chain: &ChainId) -> Result<Vec<Stored>, StoreError> {
        let mut all = self.read_all()?;
        all.retain(|s| s.record.chain() == *chain);
        Ok(all)
    }
}
