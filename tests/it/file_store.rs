//! The file store under damage, a second writer and many segments: a torn tail is cut
//! and recorded, anything else is refused and left as it was; one writer at a time; sealed
//! segments are read through their indexes, rebuilt when lost.

use super::lever;
use super::stores::{record, sealed};
use lever::evidence::audit;
use lever::evidence::file::FileStore;
use lever::evidence::{ChainId, EvidenceStore, Record, RecordKind, StoreError};

/// Frame boundaries of a segment: (start, end) of each frame.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 || at + 8 + len > bytes.len() {
            break;
        }
        out.push((at, at + 8 + len));
        at += 8 + len;
    }
    out
}

fn replayed(dir: &std::path::Path) -> std::path::PathBuf {
    let out = super::replay_examples(dir, "file:ev");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    dir.join("ev/evidence-000000.log")
}

#[test]
fn a_damaged_length_mid_segment_refuses_the_open_and_cuts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = replayed(tmp.path());
    let clean = std::fs::read(&log).unwrap();
    let f = frames(&clean);
    assert!(f.len() > 20);
    // The length field of a frame in the middle grows past the end of the file.
    let (at, _) = f[f.len() / 2];
    let mut damaged = clean.clone();
    damaged[at + 3] ^= 0x10;
    std::fs::write(&log, &damaged).unwrap();
    let out = super::replay_examples(tmp.path(), "file:ev");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("corrupt at byte {at}")) && stderr.contains("nothing is cut"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        damaged,
        "not a byte was cut or written"
    );
    // The same damage in a length that shrinks the frame: still refused.
    let mut shrunk = clean.clone();
    shrunk[at] ^= 0x08;
    std::fs::write(&log, &shrunk).unwrap();
    assert_eq!(
        super::replay_examples(tmp.path(), "file:ev").status.code(),
        Some(2)
    );
    assert_eq!(std::fs::read(&log).unwrap(), shrunk);
}

#[test]
fn a_zero_filled_tail_is_a_torn_tail_cut_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let log = replayed(tmp.path());
    let mut bytes = std::fs::read(&log).unwrap();
    let clean_len = bytes.len();
    bytes.extend(std::iter::repeat_n(0u8, 4096));
    std::fs::write(&log, &bytes).unwrap();
    // An auditor's read-only open with no writer reports it, and changes nothing.
    let verify = lever(tmp.path(), &["evidence", "verify", "--evidence", "file:ev"]);
    assert_eq!(verify.status.code(), Some(1));
    assert_eq!(std::fs::read(&log).unwrap().len(), clean_len + 4096);
    // The next writer cuts it and records the recovery.
    let again = super::replay_examples(tmp.path(), "file:ev");
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("torn final frame (4096 bytes"));
    let verify = lever(tmp.path(), &["evidence", "verify", "--evidence", "file:ev"]);
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    let mut store = FileStore::open(&tmp.path().join("ev")).unwrap();
    let store_chain = store.read_chain(&ChainId::Store).unwrap();
    let recovery = store_chain
        .iter()
        .find(|s| s.record.kind == RecordKind::Recovery)
        .unwrap();
    assert_eq!(recovery.record.body["bytes_cut"], 4096);
    assert_eq!(recovery.record.body["offset"], clean_len);
}

#[test]
fn a_second_writer_is_refused_naming_the_holder_and_readers_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    replayed(tmp.path());
    let held = FileStore::open(&tmp.path().join("ev")).unwrap();
    let second = super::replay_examples(tmp.path(), "file:ev");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "in use by another writer (pid {})",
            std::process::id()
        )),
        "{stderr}"
    );
    assert!(second.stdout.is_empty(), "no decision printed");
    let verify = lever(tmp.path(), &["evidence", "verify", "--evidence", "file:ev"]);
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    let again = FileStore::open(&tmp.path().join("ev"));
    assert!(matches!(again, Err(StoreError::Locked { .. })));
    drop(held);
    assert!(
        FileStore::open(&tmp.path().join("ev")).is_ok(),
        "released with its holder"
    );
}

/// Records of run `r{i}`, seqs 1..=3, and its summary.
fn run_records(i: usize) -> Vec<Record> {
    let run = format!("r{i}");
    let mut out: Vec<Record> = (1..=3)
        .map(|seq| {
            record(
                Some(&run),
                seq,
                RecordKind::Decision,
                serde_json::json!({"seq": seq, "pad": "x".repeat(200)}),
            )
        })
        .collect();
    if i.is_multiple_of(2) {
        out.push(record(
            Some(&run),
            4,
            RecordKind::RunSummary,
            serde_json::json!({}),
        ));
    }
    out
}

#[test]
fn sealed_segments_are_read_through_their_indexes_and_a_lost_index_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ev");
    let mut store = FileStore::open(&dir).unwrap();
    store.set_segment_bytes(8 * 1024);
    // Runs interleaved, a batch at a time, over many segments.
    let runs: Vec<Vec<Record>> = (0..120).map(run_records).collect();
    for batch in runs.chunks(3) {
        let all: Vec<Record> = batch.iter().flatten().cloned().collect();
        store.append(&sealed(&all)).unwrap();
    }
    store
        .append(&sealed(&[record(
            None,
            0,
            RecordKind::Deploy,
            serde_json::json!({"to": "x"}),
        )]))
        .unwrap();
    drop(store);
    let indexes = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "idx")
            })
            .count()
    };
    let segments = indexes(&dir);
    assert!(segments > 10, "{segments} sealed segments");

    let mut store = FileStore::open(&dir).unwrap();
    // A replay of everything adds nothing, across every sealed segment.
    for r in &runs {
        assert_eq!(store.append(&sealed(r)).unwrap(), 0);
    }
    assert_eq!(
        store
            .append(&sealed(&[record(
                None,
                0,
                RecordKind::Deploy,
                serde_json::json!({"to": "x"})
            )]))
            .unwrap(),
        0
    );
    // Another content at a stored place, or a record after a closed run, is refused.
    let mut changed = runs[7][1].clone();
    changed.body = serde_json::json!({"seq": 2, "pad": "changed"});
    assert!(matches!(
        store.append(&sealed(&[changed])),
        Err(StoreError::Contradicts(_))
    ));
    let late = record(Some("r8"), 9, RecordKind::Decision, serde_json::json!({}));
    assert!(matches!(
        store.append(&sealed(&[late])),
        Err(StoreError::ChainClosed(_))
    ));
    // An open run goes on where it stopped.
    let more = record(Some("r7"), 4, RecordKind::Decision, serde_json::json!({}));
    assert_eq!(store.append(&sealed(&[more])).unwrap(), 1);
    let r7 = store.read_chain(&ChainId::Run("r7".into())).unwrap();
    assert_eq!(r7.iter().map(|s| s.n).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(r7[0].record, runs[7][0]);
    drop(store);

    // Lost and damaged indexes are rebuilt; the store still verifies.
    std::fs::remove_file(dir.join("evidence-000002.idx")).unwrap();
    let damaged = dir.join("evidence-000004.idx");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let mut store = FileStore::open(&dir).unwrap();
    assert_eq!(indexes(&dir), segments);
    assert_eq!(store.append(&sealed(&runs[3])).unwrap(), 0);
    let verified = audit::verify(&mut store, None, None).unwrap().unwrap();
    assert_eq!(verified.chains, 121);
    assert_eq!(store.chains().unwrap().len(), 121);
}

#[test]
fn verify_finds_a_rewritten_record_in_a_large_segment_read_on_every_core() {
    // Over 4,096 records in one segment: links are computed in parallel chunks, and a
    // record rewritten with a good frame checksum (only the hash chain can catch it) is
    // still named at its place.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ev");
    let records: Vec<Record> = (1..=10_000u64)
        .map(|seq| {
            record(
                Some(&format!("r{}", seq % 7)),
                seq,
                RecordKind::Decision,
                serde_json::json!({"cost": "0.01"}),
            )
        })
        .collect();
    {
        let mut store = FileStore::open(&dir).unwrap();
        store.append(&sealed(&records)).unwrap();
        let clean = audit::verify(&mut store, None, None).unwrap().unwrap();
        assert_eq!(clean.records, 10_000);
    }
    let log = dir.join("evidence-000000.log");
    let bytes = std::fs::read(&log).unwrap();
    let f = frames(&bytes);
    assert_eq!(f.len(), 10_000, "one segment");
    // Rewrite the 7,000th record's cost and give its frame a good checksum.
    let (start, end) = f[6_999];
    let payload = String::from_utf8(bytes[start + 8..end].to_vec()).unwrap();
    assert!(payload.contains("\"seq\":7000"), "{payload}");
    let forged = payload.replace("\"cost\":\"0.01\"", "\"cost\":\"0.02\"");
    assert_eq!(forged.len(), payload.len());
    let mut tampered = bytes.clone();
    tampered[start + 4..start + 8]
        .copy_from_slice(&crc32fast::hash(forged.as_bytes()).to_le_bytes());
    tampered[start + 8..end].copy_from_slice(forged.as_bytes());
    std::fs::write(&log, &tampered).unwrap();
    let mut store = FileStore::open_read_only(&dir).unwrap();
    let problem = audit::verify(&mut store, None, None).unwrap().unwrap_err();
    assert_eq!(problem.chain, ChainId::Run("r0".into()));
    assert_eq!(problem.seq, Some(7000));
    assert_eq!(problem.n, Some(7000 / 7 - 1));
}
