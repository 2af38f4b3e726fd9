//! Segment indexes: what a segment holds, chain by chain, so that opening a store reads
//! the indexes and the tail segment, never every record.
//!
//! `evidence-NNNNNN.idx` is written (to a temporary file, fsynced, renamed) when segment
//! NNNNNN is sealed, and rebuilt from the segment when it is missing, stale or damaged: it
//! is derived data, never the evidence. Layout (little-endian):
//!
//! ```text
//! "LVIDX02\n" | segment length u64 | chains u32 | keyless u32 | outbox u32 | offsets u32 | key bytes u32
//! chain-key hashes: chains × u64, ascending          (kept in memory)
//! entries, in the same order: chains × 72 bytes:
//!     key offset u32, key length u32, first offset u32, offset count u32,
//!     last n u64, last hash [32], max keyed seq + 1 u64 (0: none), closed u8, 7 zero bytes
//! keyless record ids: keyless × 16 bytes              (kept in memory)
//! offsets of `alert` and `alert_delivery` records (the outbox): outbox × u32
//! frame offsets of every chain: offsets × u32
//! chain keys: key bytes
//! blake3 of everything above: 32 bytes
//! ```

use super::super::chain::Head;
use super::segment::Summary;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"LVIDX02\n";
const HEADER: u64 = 8 + 8 + 5 * 4;
const ENTRY: u64 = 72;

/// One chain's records in one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChainPart {
    /// Frame offsets, in order.
    pub offsets: Vec<u32>,
    /// The chain's head after this segment's last record of it.
    pub last: Option<Head>,
    /// The highest `seq` of the chain's records that have a place (not rejected lines).
    pub max_seq: Option<u64>,
}

/// What one segment holds: built while a segment is appended to, written when it is sealed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Contents {
    pub chains: HashMap<String, ChainPart>,
    /// Ids (first 16 bytes) of records that stand for themselves.
    pub keyless: Vec<[u8; 16]>,
    /// Offsets of `alert` and `alert_delivery` records (the outbox and its attempts).
    pub outbox: Vec<u32>,
}

/// The kinds whose offsets an index lists: what the alert outbox reads back.
pub(crate) fn is_outbox(kind: super::super::RecordKind) -> bool {
    matches!(
        kind,
        super::super::RecordKind::Alert | super::super::RecordKind::AlertDelivery
    )
}

/// The first 16 bytes of an id: what the store keeps in memory to deduplicate.
pub(crate) fn short(id: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(id.get(..16).unwrap_or(&[0; 16]));
    out
}

/// The hash a chain key is indexed by.
pub(crate) fn key_hash(key: &str) -> u64 {
    let h = blake3::hash(key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(h.as_bytes().get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(b)
}

impl Contents {
    /// Takes in the record at `offset`.
    pub(crate) fn add(&mut self, offset: u32, s: &Summary) {
        let part = self.chains.entry(s.chain_key()).or_default();
        part.offsets.push(offset);
        part.last = Some(s.head());
        if !s.keyless() {
            part.max_seq = Some(part.max_seq.map_or(s.seq, |m| m.max(s.seq)));
        }
        if s.keyless() {
            self.keyless.push(short(&s.id()));
        }
        if is_outbox(s.kind) {
            self.outbox.push(offset);
        }
    }
}

fn u32_of(n: usize) -> std::io::Result<u32> {
    u32::try_from(n).map_err(|_| std::io::Error::other("a segment index larger than 4 GiB"))
}

/// Writes the index of a segment of `len` bytes, durably, replacing any earlier one.
pub(crate) fn write(path: &Path, len: u64, contents: &Contents) -> std::io::Result<()> {
    let mut chains: Vec<(u64, &String, &ChainPart)> = contents
        .chains
        .iter()
        .map(|(k, p)| (key_hash(k), k, p))
        .collect();
    chains.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let offsets_total: usize = chains.iter().map(|c| c.2.offsets.len()).sum();
    let keys_total: usize = chains.iter().map(|c| c.1.len()).sum();
    let mut out = Vec::with_capacity(
        chains.len() * 80 + offsets_total * 4 + keys_total + contents.keyless.len() * 16 + 128,
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    for n in [
        chains.len(),
        contents.keyless.len(),
        contents.outbox.len(),
        offsets_total,
        keys_total,
    ] {
        out.extend_from_slice(&u32_of(n)?.to_le_bytes());
    }
    for (hash, _, _) in &chains {
        out.extend_from_slice(&hash.to_le_bytes());
    }
    let (mut key_at, mut offset_at) = (0usize, 0usize);
    for (_, key, part) in &chains {
        let head = part.last.unwrap_or(Head::EMPTY);
        for n in [key_at, key.len(), offset_at, part.offsets.len()] {
            out.extend_from_slice(&u32_of(n)?.to_le_bytes());
        }
        out.extend_from_slice(&head.len.saturating_sub(1).to_le_bytes());
        out.extend_from_slice(&head.hash);
        out.extend_from_slice(
            &part
                .max_seq
                .map_or(0, |s| s.saturating_add(1))
                .to_le_bytes(),
        );
        out.push(u8::from(head.closed));
        out.extend_from_slice(&[0; 7]);
        key_at += key.len();
        offset_at += part.offsets.len();
    }
    for id in &contents.keyless {
        out.extend_from_slice(id);
    }
    for a in &contents.outbox {
        out.extend_from_slice(&a.to_le_bytes());
    }
    for (_, _, part) in &chains {
        for o in &part.offsets {
            out.extend_from_slice(&o.to_le_bytes());
        }
    }
    for (_, key, _) in &chains {
        out.extend_from_slice(key.as_bytes());
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    let tmp = path.with_extension("idx.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&out)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A sealed segment's index, opened: the chain-key hashes in memory, entries read from the
/// file when a chain is looked up.
#[derive(Debug)]
pub(crate) struct Index {
    file: File,
    hashes: Vec<u64>,
    counts: [u64; 5],
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_le_bytes(x)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    u64::from_le_bytes(x)
}

/// Opens the index of a segment of `len` bytes: `Ok(None)` when it is missing, stale (for
/// another length) or damaged, so that the caller rebuilds it. Also returns the keyless
/// ids it lists.
pub(crate) fn open(path: &Path, len: u64) -> std::io::Result<Option<(Index, Vec<[u8; 16]>)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let Some(body_len) = bytes.len().checked_sub(32) else {
        return Ok(None);
    };
    let (body, sum) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != sum || !body.starts_with(MAGIC) || read_u64(body, 8) != len
    {
        return Ok(None);
    }
    let counts: [u64; 5] = std::array::from_fn(|i| u64::from(read_u32(body, 16 + 4 * i)));
    let chains = counts[0] as usize;
    let hashes_at = HEADER as usize;
    let hashes = (0..chains)
        .map(|i| read_u64(body, hashes_at + 8 * i))
        .collect();
    let keyless_at = hashes_at + chains * 8 + chains * ENTRY as usize;
    let keyless = (0..counts[1] as usize)
        .filter_map(|i| body.get(keyless_at + 16 * i..keyless_at + 16 * (i + 1)))
        .map(|s| {
            let mut id = [0u8; 16];
            id.copy_from_slice(s);
            id
        })
        .collect();
    Ok(Some((
        Index {
            file,
            hashes,
            counts,
        },
        keyless,
    )))
}

impl Index {
    fn entries_at(&self) -> u64 {
        HEADER + self.counts[0] * 8
    }

    fn outbox_at(&self) -> u64 {
        self.entries_at() + self.counts[0] * ENTRY + self.counts[1] * 16
    }

    fn offsets_at(&self) -> u64 {
        self.outbox_at() + self.counts[2] * 4
    }

    fn keys_at(&self) -> u64 {
        self.offsets_at() + self.counts[3] * 4
    }

    fn read(&self, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, at)?;
        Ok(buf)
    }

    /// The chain's records in this segment, if it has any.
    pub(crate) fn lookup(&self, key: &str) -> std::io::Result<Option<ChainPart>> {
        let hash = key_hash(key);
        let first = self.hashes.partition_point(|h| *h < hash);
        for i in first..self.hashes.len() {
            if self.hashes.get(i) != Some(&hash) {
                break;
            }
            let (found, part) = self.entry(i as u64)?;
            if found == key {
                return Ok(Some(part));
            }
        }
        Ok(None)
    }

    /// Entry `i`: the chain key and its part.
    fn entry(&self, i: u64) -> std::io::Result<(String, ChainPart)> {
        let e = self.read(self.entries_at() + i * ENTRY, ENTRY as usize)?;
        let (key_at, key_len, off_at, off_count) = (
            u64::from(read_u32(&e, 0)),
            read_u32(&e, 4) as usize,
            u64::from(read_u32(&e, 8)),
            read_u32(&e, 12) as usize,
        );
        let key =
            String::from_utf8_lossy(&self.read(self.keys_at() + key_at, key_len)?).into_owned();
        let raw = self.read(self.offsets_at() + 4 * off_at, 4 * off_count)?;
        let offsets = (0..off_count).map(|j| read_u32(&raw, 4 * j)).collect();
        let mut hash = [0u8; 32];
        hash.copy_from_slice(e.get(24..56).unwrap_or(&[0; 32]));
        let max_seq = read_u64(&e, 56).checked_sub(1);
        let last = Head {
            len: read_u64(&e, 16).saturating_add(1),
            hash,
            closed: e.get(64) == Some(&1),
        };
        Ok((
            key,
            ChainPart {
                offsets,
                last: Some(last),
                max_seq,
            },
        ))
    }

    /// Every chain of the segment with its part.
    pub(crate) fn chains(&self) -> std::io::Result<Vec<(String, ChainPart)>> {
        (0..self.counts[0]).map(|i| self.entry(i)).collect()
    }

    /// Offsets of the segment's alert records.
    pub(crate) fn outbox(&self) -> std::io::Result<Vec<u32>> {
        let raw = self.read(self.outbox_at(), 4 * self.counts[2] as usize)?;
        Ok((0..self.counts[2] as usize)
            .map(|j| read_u32(&raw, 4 * j))
            .collect())
    }
}
