//! Segment files: checksummed frames, and what a scan of them may conclude.
//!
//! A frame is the payload's length (`u32` LE), the CRC-32 (IEEE) of the payload (`u32` LE),
//! then the payload: a stored record (see [`super::super::chain::Stored::to_bytes`]).
//!
//! A scan accepts a bad end of the last segment as a *torn tail* only when it is what an
//! interrupted append leaves: no longer than one group commit ([`MAX_BATCH_BYTES`]), and
//! followed by no valid frame, or entirely zero bytes (what some file systems leave after
//! a power loss). Anything else is damage: the open is refused and nothing is cut.

use super::super::chain::{Head, unhex};
use super::super::{Record, RecordKind};
use std::path::Path;

pub(crate) const FRAME_HEADER: usize = 8;

/// The most bytes one append writes before its fsync: a torn tail is never longer.
pub(crate) const MAX_BATCH_BYTES: usize = 64 << 20;

/// The frame checksum: it finds torn and damaged frames; tampering is the hash chain's job.
pub(crate) fn checksum(payload: &[u8]) -> [u8; 4] {
    crc32fast::hash(payload).to_le_bytes()
}

pub(crate) fn segment_path(dir: &Path, n: u32) -> std::path::PathBuf {
    dir.join(format!("evidence-{n:06}.log"))
}

pub(crate) fn index_path(dir: &Path, n: u32) -> std::path::PathBuf {
    dir.join(format!("evidence-{n:06}.idx"))
}

/// Appends one frame around `payload` to `out`.
pub(crate) fn push_frame(out: &mut Vec<u8>, payload: &[u8]) -> Option<()> {
    let len = u32::try_from(payload.len()).ok()?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(payload));
    out.extend_from_slice(payload);
    Some(())
}

/// The frame at `at`, if a whole one with a good checksum starts there: (payload, end).
pub(crate) fn frame_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let header = bytes.get(at..at.checked_add(FRAME_HEADER)?)?;
    let (len_bytes, sum) = header.split_at(4);
    let len = u32::from_le_bytes(len_bytes.try_into().ok()?) as usize;
    if len == 0 {
        return None; // no record is empty, and zeros would pass the checksum
    }
    let end = at.checked_add(FRAME_HEADER)?.checked_add(len)?;
    let payload = bytes.get(at + FRAME_HEADER..end)?;
    (checksum(payload) == sum).then_some((payload, end))
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Every byte is in a whole frame.
    Clean,
    /// A torn tail starts at this offset: an interrupted append.
    Torn(usize),
    /// Damage at this offset: refused, never cut.
    Damaged(usize, String),
}

/// Splits a segment into frames: each payload's offset and bytes, and how the scan ended.
pub(crate) fn scan(bytes: &[u8]) -> (Vec<(usize, &[u8])>, End) {
    let mut frames = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        match frame_at(bytes, at) {
            Some((payload, end)) => {
                frames.push((at, payload));
                at = end;
            }
            None => return (frames, judge_bad_end(bytes, at)),
        }
    }
    (frames, End::Clean)
}

/// Whether the bytes from `at` on, where no whole frame starts, are a torn tail.
fn judge_bad_end(bytes: &[u8], at: usize) -> End {
    let rest = bytes.get(at..).unwrap_or_default();
    if rest.iter().all(|b| *b == 0) {
        return End::Torn(at); // a zero-filled tail
    }
    if rest.len() > MAX_BATCH_BYTES {
        return End::Damaged(
            at,
            format!(
                "a bad frame with {} bytes after it, more than one append writes",
                rest.len()
            ),
        );
    }
    if let Some(next) = next_valid_frame(bytes, at + 1) {
        return End::Damaged(
            at,
            format!("a bad frame followed by a valid frame at byte {next}"),
        );
    }
    End::Torn(at)
}

/// The first offset from `from` on where a whole, valid frame of a stored record starts.
fn next_valid_frame(bytes: &[u8], from: usize) -> Option<usize> {
    let marker = b"{\"kind\":\"";
    (from..bytes.len()).find(|&p| {
        bytes
            .get(p + FRAME_HEADER..p + FRAME_HEADER + marker.len())
            .is_some_and(|m| m == marker)
            && frame_at(bytes, p).is_some()
    })
}

/// What the store needs of a stored record without parsing its body: its place, chain
/// position and hashes. The canonical bytes are the stored bytes without the `n`, `prev`
/// and `hash` fields appended at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub kind: RecordKind,
    pub artifact: String,
    pub run_id: Option<String>,
    pub seq: u64,
    pub index: u32,
    pub n: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    /// blake3 over the canonical bytes.
    pub content: [u8; 32],
}

#[derive(serde::Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    kind: &'a str,
    #[serde(borrow)]
    artifact: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    run_id: Option<std::borrow::Cow<'a, str>>,
    seq: u64,
    index: u32,
}

/// A payload split at its stored-form suffix: the canonical bytes without their closing
/// brace, then `n`, `prev` and `hash`.
type Suffix<'a> = (&'a [u8], u64, [u8; 32], [u8; 32]);

/// The stored-form suffix `,"n":N,"prev":"<64 hex>","hash":"<64 hex>"}` read from the end
/// of a payload: what comes before it, and `n`, `prev` and `hash`.
fn split_suffix(payload: &[u8]) -> Option<Suffix<'_>> {
    let hash_end = payload.len().checked_sub(2)?;
    let hash = std::str::from_utf8(payload.get(hash_end.checked_sub(64)?..hash_end)?).ok()?;
    let before_hash = hash_end.checked_sub(64 + 10)?; // `","hash":"`
    let prev_start = before_hash.checked_sub(64)?;
    let prev = std::str::from_utf8(payload.get(prev_start..before_hash)?).ok()?;
    let before_prev = prev_start.checked_sub(9)?; // `,"prev":"`
    let n_field = payload.get(..before_prev)?;
    let n_at = find_last(n_field, b",\"n\":")?;
    let n_text = std::str::from_utf8(n_field.get(n_at + 5..)?).ok()?;
    Some((
        payload.get(..n_at)?,
        n_text.parse().ok()?,
        unhex(prev)?,
        unhex(hash)?,
    ))
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

impl Summary {
    /// Reads a payload's summary; `None` if it is not a stored record.
    pub(crate) fn of(payload: &[u8]) -> Option<Summary> {
        let (body, n, prev, hash) = split_suffix(payload)?;
        let mut canonical = Vec::with_capacity(body.len() + 1);
        canonical.extend_from_slice(body);
        canonical.push(b'}');
        let fields: Fields = serde_json::from_slice(&canonical).ok()?;
        Some(Summary {
            kind: RecordKind::from_name(fields.kind)?,
            artifact: fields.artifact.into_owned(),
            run_id: fields.run_id.map(std::borrow::Cow::into_owned),
            seq: fields.seq,
            index: fields.index,
            n,
            prev,
            hash,
            content: *blake3::hash(&canonical).as_bytes(),
        })
    }

    /// What verification reads of the record.
    pub(crate) fn link(&self) -> crate::evidence::chain::Link {
        crate::evidence::chain::Link {
            chain: match &self.run_id {
                Some(run) => crate::evidence::ChainId::Run(run.clone()),
                None => crate::evidence::ChainId::Store,
            },
            kind: self.kind,
            seq: self.seq,
            n: self.n,
            prev: self.prev,
            hash: self.hash,
            content: self.content,
        }
    }

    /// The record's id, as [`Record::id`] computes it.
    pub(crate) fn id(&self) -> [u8; 32] {
        Record::id_of(
            &self.artifact,
            self.run_id.as_deref(),
            self.seq,
            self.kind,
            self.index,
            &self.content,
        )
    }

    /// The chain key (`""` for the store chain, `r:ID` for a run).
    pub(crate) fn chain_key(&self) -> String {
        match &self.run_id {
            Some(run) => format!("r:{run}"),
            None => String::new(),
        }
    }

    pub(crate) fn head(&self) -> Head {
        Head {
            len: self.n + 1,
            hash: self.hash,
            closed: self.kind == RecordKind::RunSummary,
        }
    }

    /// Whether the record stands for itself (deduplicated by id, content included) rather
    /// than for a place a replay must agree on.
    pub(crate) fn keyless(&self) -> bool {
        self.run_id.is_none() || self.kind == RecordKind::RejectedInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        push_frame(&mut out, text.as_bytes()).unwrap();
        out
    }

    const RECORD: &str =
        r#"{"kind":"decision","artifact":"a","run_id":"r","seq":1,"index":0,"body":{}}"#;

    #[test]
    fn a_bad_end_is_torn_only_when_nothing_valid_follows() {
        let mut bytes = frame(RECORD);
        bytes.extend(frame(RECORD));
        let whole = bytes.len();
        assert_eq!(scan(&bytes).1, End::Clean);
        // A partial final frame: torn.
        let mut torn = bytes.clone();
        torn.extend_from_slice(&frame(RECORD)[..20]);
        assert_eq!(scan(&torn).1, End::Torn(whole));
        // Zeros after the last frame: torn.
        let mut zeros = bytes.clone();
        zeros.extend(std::iter::repeat_n(0, 5000));
        assert_eq!(scan(&zeros).1, End::Torn(whole));
        // A damaged length in the first frame, with a valid frame after it: damage.
        let mut damaged = bytes.clone();
        damaged[1] ^= 0x40;
        assert!(matches!(scan(&damaged).1, End::Damaged(0, _)));
    }

    #[test]
    fn a_summary_reads_the_place_and_the_chain_fields() {
        let canonical = RECORD.as_bytes();
        let stored = super::super::super::chain::stored_bytes(canonical, 7, &[1; 32], &[2; 32]);
        let s = Summary::of(&stored).unwrap();
        assert_eq!(
            (s.kind, s.run_id.as_deref(), s.seq, s.n),
            (RecordKind::Decision, Some("r"), 1, 7)
        );
        assert_eq!(s.hash, [2; 32]);
        assert_eq!(s.content, *blake3::hash(canonical).as_bytes());
    }
}
