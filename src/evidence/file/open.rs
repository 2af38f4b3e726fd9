//! Opening a file store: the writer lock, each sealed segment's index (rebuilt when it is
//! missing or stale), the tail segment's scan, and the recovery of a torn tail.

use super::index::{self, Contents};
use super::segment::{self, End, Summary, index_path, segment_path};
use super::{FileStore, SealedIndex, SealedSegment, Tail, io_error, lock};
use crate::evidence::chain::{self, ChainId};
use crate::evidence::{EvidenceStore, Record, RecordKind, Sealed, StoreError};
use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::path::Path;

/// The segment numbers present in `dir`, in order; they must be 0, 1, 2, ... .
fn segments(dir: &Path) -> Result<Vec<u32>, StoreError> {
    let mut found: Vec<u32> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let name = entry.map_err(io_error(dir))?.file_name();
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

fn corrupt(path: &Path, offset: usize, why: String) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        offset: offset as u64,
        why,
    }
}

/// What a segment's frames hold.
fn contents_of(path: &Path, frames: &[(usize, &[u8])]) -> Result<Contents, StoreError> {
    let mut contents = Contents::default();
    for (offset, payload) in frames {
        let summary = Summary::of(payload)
            .ok_or_else(|| corrupt(path, *offset, "a frame holds no evidence record".into()))?;
        contents.add(u32::try_from(*offset).unwrap_or(u32::MAX), &summary);
    }
    Ok(contents)
}

/// A sealed segment's index, rebuilt from the segment when missing, stale or damaged
/// (written back unless the store is read-only); and the keyless ids it lists.
fn open_sealed(
    dir: &Path,
    n: u32,
    read_only: bool,
) -> Result<(SealedSegment, Vec<[u8; 16]>), StoreError> {
    let path = segment_path(dir, n);
    let len = std::fs::metadata(&path).map_err(io_error(&path))?.len();
    let idx = index_path(dir, n);
    if let Some((opened, keyless)) = index::open(&idx, len).map_err(io_error(&idx))? {
        let sealed = SealedSegment {
            number: n,
            index: SealedIndex::File(opened),
        };
        return Ok((sealed, keyless));
    }
    let bytes = std::fs::read(&path).map_err(io_error(&path))?;
    let (frames, end) = segment::scan(&bytes);
    match end {
        End::Clean => {}
        End::Torn(at) | End::Damaged(at, _) => {
            return Err(corrupt(&path, at, "a torn or damaged frame in a sealed segment (not the last one): this is damage, and nothing is cut".into()));
        }
    }
    let contents = contents_of(&path, &frames)?;
    let keyless = contents.keyless.clone();
    let index = if read_only {
        SealedIndex::Memory(contents)
    } else {
        index::write(&idx, len, &contents).map_err(io_error(&idx))?;
        eprintln!(
            "lever: evidence store {}: rebuilt the index of {}",
            dir.display(),
            path.display()
        );
        match index::open(&idx, len).map_err(io_error(&idx))? {
            Some((opened, _)) => SealedIndex::File(opened),
            None => SealedIndex::Memory(contents),
        }
    };
    Ok((SealedSegment { number: n, index }, keyless))
}

/// The tail segment opened and scanned; `Some((offset, bytes))` when a torn tail was cut.
struct OpenedTail {
    tail: Tail,
    cut: Option<(usize, usize)>,
}

fn open_tail(dir: &Path, n: u32, read_only: bool) -> Result<OpenedTail, StoreError> {
    let path = segment_path(dir, n);
    let file = OpenOptions::new()
        .read(true)
        .append(!read_only)
        .create(!read_only)
        .open(&path)
        .map_err(io_error(&path))?;
    let bytes = std::fs::read(&path).map_err(io_error(&path))?;
    let (frames, end) = segment::scan(&bytes);
    let good = match end {
        End::Clean => bytes.len(),
        End::Damaged(at, why) => {
            return Err(corrupt(
                &path,
                at,
                format!(
                    "{why}; a torn tail is never followed by a valid frame, so this is damage and nothing is cut: restore the segment from a copy, or move the store aside"
                ),
            ));
        }
        // A writer is appending: its last batch is not whole yet.
        End::Torn(at) if read_only && lock::held_by_other(dir) => at,
        End::Torn(at) if read_only => {
            return Err(corrupt(
                &path,
                at,
                format!(
                    "the final frame ({} bytes) is torn; a crash mid-write leaves this, and the next `lever run` cuts it off and records a recovery",
                    bytes.len() - at
                ),
            ));
        }
        End::Torn(at) => at,
    };
    let contents = contents_of(&path, &frames)?;
    let mut cut = None;
    if good < bytes.len() && !read_only {
        file.set_len(good as u64).map_err(io_error(&path))?;
        file.sync_all().map_err(io_error(&path))?;
        cut = Some((good, bytes.len() - good));
    }
    Ok(OpenedTail {
        tail: Tail {
            number: n,
            file,
            len: good as u64,
            contents,
        },
        cut,
    })
}

impl FileStore {
    /// Opens (creating when missing) the store in `dir` for writing, cutting off a torn
    /// final frame; refused while another process writes it.
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        FileStore::open_mode(dir, false)
    }

    /// Opens an existing store for reading only, as an audit does: nothing is created,
    /// written or cut, and no lock is taken; a torn final frame is corruption, unless a
    /// writer holds the store (its append is in progress, and is left out).
    pub fn open_read_only(dir: &Path) -> Result<FileStore, StoreError> {
        FileStore::open_mode(dir, true)
    }

    fn open_mode(dir: &Path, read_only: bool) -> Result<FileStore, StoreError> {
        let held = if read_only {
            std::fs::metadata(dir).map_err(io_error(dir))?;
            None
        } else {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
            Some(lock::acquire(dir)?)
        };
        let mut numbers = segments(dir)?;
        if numbers.is_empty() {
            numbers.push(0);
        }
        let last = numbers.pop().unwrap_or(0);
        let mut sealed = Vec::with_capacity(numbers.len());
        let mut keyless = HashSet::new();
        for n in numbers {
            let (s, ids) = open_sealed(dir, n, read_only)?;
            keyless.extend(ids);
            sealed.push(s);
        }
        let OpenedTail { tail, cut } = open_tail(dir, last, read_only)?;
        keyless.extend(tail.contents.keyless.iter().copied());
        let mut store = FileStore {
            dir: dir.to_path_buf(),
            _lock: held,
            sealed,
            tail,
            chains: HashMap::new(),
            keyless,
            segment_bytes: super::SEGMENT_BYTES,
            failed: read_only,
            fail_next_sync: false,
            counters: None,
        };
        if let Some((offset, bytes)) = cut {
            store.record_recovery(last, offset, bytes)?;
        }
        Ok(store)
    }

    /// Reports a torn tail that was cut off, and records it in the store chain.
    fn record_recovery(
        &mut self,
        segment: u32,
        offset: usize,
        bytes: usize,
    ) -> Result<(), StoreError> {
        let path = segment_path(&self.dir, segment);
        eprintln!(
            "lever: evidence store {}: cut off a torn final frame ({bytes} bytes at offset {offset}) left by an interrupted write",
            path.display()
        );
        let previous = self.state(&ChainId::Store.key())?.head.hash;
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
                "previous_store_head": chain::hex(&previous),
            }),
        };
        self.append(&[Sealed::new(recovery)]).map(|_| ())
    }
}

impl FileStore {
    /// A read-only store catches up with its writer: records appended since it looked,
    /// and segments sealed since (their indexes opened). An append still in progress is
    /// left for the next look.
    pub(super) fn refresh(&mut self) -> Result<(), StoreError> {
        if self._lock.is_some() {
            return Ok(()); // the writer knows what it wrote
        }
        // A reader sums counters again from what it reads.
        self.counters = None;
        loop {
            self.read_new_tail_frames()?;
            let next = self.tail.number.saturating_add(1);
            if !segment_path(&self.dir, next).exists() {
                return Ok(());
            }
            // The tail was sealed: take its index, then follow the next segment.
            let (sealed, ids) = open_sealed(&self.dir, self.tail.number, true)?;
            self.keyless.extend(ids);
            self.sealed.push(sealed);
            let OpenedTail { tail, .. } = open_tail(&self.dir, next, true)?;
            self.keyless.extend(tail.contents.keyless.iter().copied());
            self.tail = tail;
            self.chains.clear();
        }
    }

    fn read_new_tail_frames(&mut self) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        let path = segment_path(&self.dir, self.tail.number);
        let len = self.tail.file.metadata().map_err(io_error(&path))?.len();
        if len <= self.tail.len {
            return Ok(());
        }
        let mut fresh = vec![0u8; usize::try_from(len - self.tail.len).unwrap_or(0)];
        self.tail
            .file
            .read_exact_at(&mut fresh, self.tail.len)
            .map_err(io_error(&path))?;
        let (frames, _) = segment::scan(&fresh);
        let base = self.tail.len;
        let mut end = base;
        for (offset, payload) in frames {
            let at = base + offset as u64;
            let summary = Summary::of(payload).ok_or_else(|| {
                corrupt(
                    &path,
                    at as usize,
                    "a frame holds no evidence record".into(),
                )
            })?;
            self.tail
                .contents
                .add(u32::try_from(at).unwrap_or(u32::MAX), &summary);
            if summary.keyless() {
                self.keyless.insert(index::short(&summary.id()));
            }
            end = at + (segment::FRAME_HEADER + payload.len()) as u64;
        }
        self.tail.len = end;
        self.chains.clear();
        Ok(())
    }
}
