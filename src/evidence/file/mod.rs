//! The embedded file store: append-only segment files of checksummed frames, with an
//! index beside each sealed segment.
//!
//! `DIR/evidence-NNNNNN.log`, numbered from 0; a segment is sealed, and a new one started,
//! once it passes `SEGMENT_BYTES`. An append is one write and one fsync of its batch (the
//! group commit) before it returns. One process writes a store at a time (`lock`).
//!
//! Memory does not grow with the store: opening reads each sealed segment's index (`index`:
//! the chain-key hashes and the ids of records that stand for themselves) and scans the
//! tail segment; a chain's head and places are looked up when a record of it is appended
//! (and forgotten once a `run_summary` closes it). A torn tail of the last segment (`segment`)
//! is cut off, reported on stderr and recorded as a `recovery` record in the store chain;
//! damage anywhere refuses the open: the store is never silently rewritten. After a failed
//! write or fsync the store refuses every later call.

mod counters;
mod index;
mod lock;
mod open;
mod read;
mod segment;

use super::chain::{self, ChainId, Head, Linked};
use super::{EvidenceStore, RecordKey, RecordKind, Sealed, StoreError};
use index::{Contents, Index};
use segment::{MAX_BATCH_BYTES, Summary, segment_path};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Frames around each payload, as segments hold them (the outage spill file reuses them).
pub(crate) fn segment_frames<P: AsRef<[u8]>>(payloads: impl IntoIterator<Item = P>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        segment::push_frame(&mut out, p.as_ref());
    }
    out
}

/// The whole frames of a file of frames, each with its offset; a torn end is left out.
pub(crate) fn scan_frames(bytes: &[u8]) -> (Vec<(usize, &[u8])>, bool) {
    let (frames, end) = segment::scan(bytes);
    (frames, end == segment::End::Clean)
}

/// A segment is sealed and a new one started once it holds this many bytes.
pub(crate) const SEGMENT_BYTES: u64 = 64 << 20;

/// A record's place within its chain: (seq, kind, index).
type Place = (u64, RecordKind, u32);

/// What the store knows of one chain it has touched.
#[derive(Debug, Clone)]
struct ChainState {
    head: Head,
    /// The highest `seq` of the chain's records that have a place: a record above it is
    /// new without looking further.
    max_seq: Option<u64>,
    /// Every place of the chain with its content hash, read from disk when a record at or
    /// below `max_seq` must be compared.
    places: Option<HashMap<Place, [u8; 32]>>,
}

/// A sealed segment's index: on disk, or built in memory where the store may not write.
#[derive(Debug)]
enum SealedIndex {
    File(Index),
    Memory(Contents),
}

#[derive(Debug)]
struct SealedSegment {
    number: u32,
    index: SealedIndex,
}

/// The segment being appended to.
#[derive(Debug)]
struct Tail {
    number: u32,
    file: File,
    len: u64,
    contents: Contents,
}

pub struct FileStore {
    dir: PathBuf,
    _lock: Option<lock::WriterLock>,
    sealed: Vec<SealedSegment>,
    tail: Tail,
    chains: HashMap<String, ChainState>,
    /// Short ids of every stored record that stands for itself (no place).
    keyless: HashSet<[u8; 16]>,
    /// When the tail segment is sealed: [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    failed: bool,
    fail_next_sync: bool,
    /// Budget counters by id, once summed ([`counters`]).
    counters: Option<HashMap<String, i64>>,
}

impl SealedIndex {
    fn lookup(&self, key: &str) -> std::io::Result<Option<index::ChainPart>> {
        match self {
            SealedIndex::File(i) => i.lookup(key),
            SealedIndex::Memory(c) => Ok(c.chains.get(key).cloned()),
        }
    }

    fn chains(&self) -> std::io::Result<Vec<(String, index::ChainPart)>> {
        match self {
            SealedIndex::File(i) => i.chains(),
            SealedIndex::Memory(c) => Ok(c
                .chains
                .iter()
                .map(|(k, p)| (k.clone(), p.clone()))
                .collect()),
        }
    }

    fn outbox(&self) -> std::io::Result<Vec<u32>> {
        match self {
            SealedIndex::File(i) => i.outbox(),
            SealedIndex::Memory(c) => Ok(c.outbox.clone()),
        }
    }
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl FileStore {
    /// Makes the next fsync fail, as a full or failing disk would: for tests of the rule
    /// that a store acknowledges nothing after a failed write.
    #[doc(hidden)]
    pub fn inject_sync_failure(&mut self) {
        self.fail_next_sync = true;
    }

    /// Seals segments at `bytes` instead of [`SEGMENT_BYTES`]: for tests of many segments.
    #[doc(hidden)]
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes;
    }

    fn stopped(&self) -> StoreError {
        StoreError::Stopped(self.dir.display().to_string())
    }

    /// The state of a chain: from the cache, or looked up in the tail and the indexes.
    fn state(&mut self, key: &str) -> Result<&mut ChainState, StoreError> {
        if !self.chains.contains_key(key) {
            let state = self.look_up(key)?;
            self.chains.insert(key.to_string(), state);
        }
        self.chains
            .get_mut(key)
            .ok_or_else(|| StoreError::Stopped(self.dir.display().to_string()))
    }

    fn look_up(&self, key: &str) -> Result<ChainState, StoreError> {
        let mut head = None;
        let mut max_seq = None;
        let mut parts = self.tail.contents.chains.get(key).cloned().into_iter();
        let mut consider = |part: index::ChainPart| {
            head = head.or(part.last);
            max_seq = max_seq.or(part.max_seq);
            head.is_some() && max_seq.is_some()
        };
        if parts.next().is_some_and(&mut consider) {
            return Ok(self.fresh_state(head, max_seq));
        }
        for sealed in self.sealed.iter().rev() {
            let part = sealed
                .index
                .lookup(key)
                .map_err(io_error(&segment_path(&self.dir, sealed.number)))?;
            if part.is_some_and(&mut consider) {
                break;
            }
        }
        Ok(self.fresh_state(head, max_seq))
    }

    fn fresh_state(&self, head: Option<Head>, max_seq: Option<u64>) -> ChainState {
        ChainState {
            head: head.unwrap_or(Head::EMPTY),
            max_seq,
            // A chain with no record has no place to compare with.
            places: head.is_none().then(HashMap::new),
        }
    }

    /// Loads every place of a chain from its stored records.
    fn load_places(&mut self, key: &str) -> Result<(), StoreError> {
        if self.chains.get(key).is_some_and(|s| s.places.is_some()) {
            return Ok(());
        }
        let chain = ChainId::from_key(key).unwrap_or(ChainId::Store);
        let mut places = HashMap::new();
        for s in self.read_chain_summaries(&chain)? {
            if !s.keyless() {
                places.insert((s.seq, s.kind, s.index), s.content);
            }
        }
        if let Some(state) = self.chains.get_mut(key) {
            state.places = Some(places);
        }
        Ok(())
    }

    /// The records of a batch not yet stored, each with its id; `Contradicts` when one would
    /// take a place that holds, or an earlier record of the batch gives, other content.
    fn fresh<'r>(
        &mut self,
        records: &'r [Sealed],
        exclusive: bool,
    ) -> Result<Vec<&'r Sealed>, StoreError> {
        let mut fresh = Vec::new();
        let mut batch_ids = HashSet::new();
        let mut batch_places: HashMap<RecordKey, [u8; 32]> = HashMap::new();
        for r in records {
            let Some(key) = r.record().key() else {
                let short = index::short(&r.id());
                if !self.keyless.contains(&short) && batch_ids.insert(short) {
                    fresh.push(r);
                }
                continue;
            };
            let content = r.content();
            if let Some(earlier) = batch_places.get(&key) {
                if *earlier != content {
                    return Err(contradicts(&key));
                }
                continue;
            }
            if let Some(stored) = self.stored_place(&key)? {
                if exclusive {
                    return Err(StoreError::Fenced(format!(
                        "run `{}` seq {} is stored",
                        key.run_id, key.seq
                    )));
                }
                if stored != content {
                    return Err(contradicts(&key));
                }
                continue;
            }
            batch_places.insert(key, content);
            fresh.push(r);
        }
        Ok(fresh)
    }

    /// The content stored at a place, if any.
    fn stored_place(&mut self, key: &RecordKey) -> Result<Option<[u8; 32]>, StoreError> {
        let chain = format!("r:{}", key.run_id);
        let state = self.state(&chain)?;
        let may_exist = state.max_seq.is_some_and(|m| key.seq <= m);
        if !may_exist {
            return Ok(None);
        }
        self.load_places(&chain)?;
        Ok(self
            .chains
            .get(&chain)
            .and_then(|s| s.places.as_ref())
            .and_then(|p| p.get(&(key.seq, key.kind, key.index)).copied()))
    }

    /// Seals the tail segment (its index written) and starts the next one.
    fn seal(&mut self) -> Result<(), StoreError> {
        let number = self.tail.number;
        let idx = segment::index_path(&self.dir, number);
        index::write(&idx, self.tail.len, &self.tail.contents).map_err(io_error(&idx))?;
        let (opened, _) = index::open(&idx, self.tail.len)
            .map_err(io_error(&idx))?
            .ok_or_else(|| StoreError::Corrupt {
                path: idx.display().to_string(),
                offset: 0,
                why: "the index just written does not read back".into(),
            })?;
        let next = number.saturating_add(1);
        let path = segment_path(&self.dir, next);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error(&path))?;
        // The new segment's directory entry must be durable before records rely on it.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&self.dir))?;
        self.sealed.push(SealedSegment {
            number,
            index: SealedIndex::File(opened),
        });
        self.tail = Tail {
            number: next,
            file,
            len: 0,
            contents: Contents::default(),
        };
        Ok(())
    }

    /// Writes framed records, an fsync after every [`MAX_BATCH_BYTES`] at most.
    fn write_frames(&mut self, frames: &[u8]) -> Result<(), StoreError> {
        let path = segment_path(&self.dir, self.tail.number);
        let io = io_error(&path);
        let mut rest = frames;
        while !rest.is_empty() {
            let cut = frame_boundary(rest, MAX_BATCH_BYTES);
            let (part, after) = rest.split_at(cut);
            self.tail.file.write_all(part).map_err(&io)?;
            if std::mem::take(&mut self.fail_next_sync) {
                return Err(io(std::io::Error::other("fsync failed (injected)")));
            }
            self.tail.file.sync_data().map_err(&io)?;
            rest = after;
        }
        Ok(())
    }

    /// Takes linked records into the tail's contents and the chain states, once durable;
    /// `offsets` are their frames' offsets in the tail segment.
    fn remember(&mut self, linked: &[Linked], offsets: &[u64]) {
        for (l, at) in linked.iter().zip(offsets) {
            let r = l.record();
            let summary = Summary {
                kind: r.kind,
                artifact: r.artifact.clone(),
                run_id: r.run_id.clone(),
                seq: r.seq,
                index: r.index,
                n: l.n,
                prev: l.prev,
                hash: l.hash,
                content: l.sealed.content(),
            };
            self.tail
                .contents
                .add(u32::try_from(*at).unwrap_or(u32::MAX), &summary);
            if summary.keyless() {
                self.keyless.insert(index::short(&l.sealed.id()));
            }
            let key = summary.chain_key();
            if let Some(state) = self.chains.get_mut(&key) {
                state.head = l.head();
                if !summary.keyless() {
                    state.max_seq = Some(state.max_seq.map_or(r.seq, |m| m.max(r.seq)));
                    if let Some(places) = state.places.as_mut() {
                        places.insert((r.seq, r.kind, r.index), l.sealed.content());
                    }
                }
            }
        }
        // A closed chain takes no more records: forget it; a lookup finds it closed.
        self.chains.retain(|_, s| !s.head.closed);
    }
}

/// The length of the longest prefix of whole frames no longer than `max` (at least one).
fn frame_boundary(frames: &[u8], max: usize) -> usize {
    let mut at = 0;
    while at < frames.len() {
        let len = frames
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| u32::from_le_bytes(b) as usize);
        let next = at + segment::FRAME_HEADER + len;
        if at > 0 && next > max {
            break;
        }
        at = next;
    }
    at.min(frames.len())
}

impl FileStore {
    fn append_checked(&mut self, records: &[Sealed], exclusive: bool) -> Result<usize, StoreError> {
        if self.failed {
            return Err(self.stopped());
        }
        let fresh = self.fresh(records, exclusive)?;
        if fresh.is_empty() {
            return Ok(0);
        }
        let counted = self.counters_before_write(&fresh, exclusive)?;
        if self.tail.len >= self.segment_bytes {
            self.seal()?;
        }
        let mut heads: HashMap<ChainId, Head> = HashMap::new();
        for r in &fresh {
            let chain = r.record().chain();
            if let std::collections::hash_map::Entry::Vacant(slot) = heads.entry(chain) {
                let head = self.state(&slot.key().key())?.head;
                slot.insert(head);
            }
        }
        let linked = chain::link(&mut heads, fresh)?;
        let mut frames = Vec::with_capacity(
            linked
                .iter()
                .map(|l| l.sealed.canonical().len() + 200)
                .sum(),
        );
        let mut offsets = Vec::with_capacity(linked.len());
        let mut payload = Vec::new();
        for l in &linked {
            offsets.push(self.tail.len + frames.len() as u64);
            payload.clear();
            chain::push_stored_bytes(&mut payload, l.sealed.canonical(), l.n, &l.prev, &l.hash);
            segment::push_frame(&mut frames, &payload).ok_or_else(|| StoreError::Corrupt {
                path: self.dir.display().to_string(),
                offset: 0,
                why: "a record larger than 4 GiB".into(),
            })?;
        }
        if let Err(e) = self.write_frames(&frames) {
            self.failed = true;
            return Err(e);
        }
        self.tail.len += frames.len() as u64;
        self.remember(&linked, &offsets);
        self.counters_written(&counted);
        Ok(linked.len())
    }
}

fn contradicts(key: &RecordKey) -> StoreError {
    StoreError::Contradicts(format!(
        "run `{}` seq {} ({})",
        key.run_id,
        key.seq,
        key.kind.name()
    ))
}

impl EvidenceStore for FileStore {
    fn first_conflict(&mut self, records: &[Sealed]) -> Result<Option<RecordKey>, StoreError> {
        for r in records {
            let Some(key) = r.record().key() else {
                continue;
            };
            if let Some(stored) = self.stored_place(&key)?
                && stored != r.content()
            {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    fn append(&mut self, records: &[Sealed]) -> Result<usize, StoreError> {
        self.append_checked(records, false)
    }

    fn append_exclusive(&mut self, records: &[Sealed]) -> Result<usize, StoreError> {
        self.append_checked(records, true)
    }

    fn read_chain(&mut self, chain: &ChainId) -> Result<Vec<super::Stored>, StoreError> {
        self.refresh()?;
        self.read_chain_records(chain)
    }

    fn counters(&mut self, ids: &[String]) -> Result<HashMap<String, i64>, StoreError> {
        self.refresh()?;
        self.counter_values(ids)
    }

    fn live_runs(&mut self) -> Result<Vec<String>, StoreError> {
        self.refresh()?;
        Ok(self
            .chains()?
            .into_iter()
            .filter(|(_, head)| !head.closed)
            .filter_map(|(chain, _)| match chain {
                ChainId::Run(id) => Some(id),
                ChainId::Store => None,
            })
            .collect())
    }

    fn read_recent(
        &mut self,
        kind: RecordKind,
        limit: usize,
    ) -> Result<Vec<super::Stored>, StoreError> {
        self.refresh()?;
        self.recent(kind, limit)
    }

    fn visit_all(
        &mut self,
        visit: &mut dyn FnMut(super::Stored) -> std::ops::ControlFlow<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        self.refresh()?;
        self.visit_segments(visit, progress)
    }

    fn visit_links(
        &mut self,
        visit: &mut dyn FnMut(chain::Link) -> std::ops::ControlFlow<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        self.refresh()?;
        self.visit_segment_links(visit, progress)
    }
}
