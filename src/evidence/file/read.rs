//! Reading a file store: one chain through the indexes, every record segment by segment
//! (streamed, for `verify`), and the newest alert records.

use super::index::ChainPart;
use super::segment::{self, FRAME_HEADER, Summary, segment_path};
use super::{FileStore, io_error};
use crate::evidence::chain::{ChainId, Link, Stored};
use crate::evidence::{RecordKind, StoreError};
use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;

/// Reads the frame at `offset` of a segment, checking its checksum.
fn read_frame(file: &File, path: &std::path::Path, offset: u32) -> Result<Vec<u8>, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt {
        path: path.display().to_string(),
        offset: u64::from(offset),
        why: why.to_string(),
    };
    let mut header = [0u8; FRAME_HEADER];
    file.read_exact_at(&mut header, u64::from(offset))
        .map_err(io_error(path))?;
    let (len, sum) = header.split_at(4);
    let len = u32::from_le_bytes(len.try_into().unwrap_or([0; 4])) as usize;
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, u64::from(offset) + FRAME_HEADER as u64)
        .map_err(io_error(path))?;
    if segment::checksum(&payload) != sum {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(payload)
}

/// Called with each payload: its segment, offset and bytes.
type PayloadVisit<'a> = dyn FnMut(u32, u32, &[u8]) -> Result<ControlFlow<()>, StoreError> + 'a;

/// What visits a segment's frames: its number, and each frame's offset and payload.
type FramesVisit<'a> =
    dyn FnMut(u32, &[(usize, &[u8])]) -> Result<ControlFlow<()>, StoreError> + 'a;

impl FileStore {
    /// Each segment holding records of a chain, oldest first, with the chain's part in it.
    fn parts_of(&self, chain: &ChainId) -> Result<Vec<(u32, ChainPart)>, StoreError> {
        let key = chain.key();
        let mut parts = Vec::new();
        for sealed in &self.sealed {
            let found = sealed
                .index
                .lookup(&key)
                .map_err(io_error(&segment_path(&self.dir, sealed.number)))?;
            parts.extend(found.map(|p| (sealed.number, p)));
        }
        if let Some(p) = self.tail.contents.chains.get(&key) {
            parts.push((self.tail.number, p.clone()));
        }
        Ok(parts)
    }

    /// The payloads of a chain's records, in order.
    fn chain_payloads(&self, chain: &ChainId) -> Result<Vec<(u32, u32, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for (number, part) in self.parts_of(chain)? {
            let path = segment_path(&self.dir, number);
            let file = File::open(&path).map_err(io_error(&path))?;
            for offset in part.offsets {
                out.push((number, offset, read_frame(&file, &path, offset)?));
            }
        }
        Ok(out)
    }

    /// One chain's records in order, as stored.
    pub(super) fn read_chain_records(&self, chain: &ChainId) -> Result<Vec<Stored>, StoreError> {
        self.chain_payloads(chain)?
            .into_iter()
            .map(|(number, offset, payload)| parse(&self.dir, number, offset, &payload))
            .collect()
    }

    /// One chain's record summaries in order (places and hashes, bodies not parsed).
    pub(super) fn read_chain_summaries(&self, chain: &ChainId) -> Result<Vec<Summary>, StoreError> {
        self.chain_payloads(chain)?
            .into_iter()
            .map(|(number, offset, payload)| {
                Summary::of(&payload).ok_or_else(|| not_a_record(&self.dir, number, offset))
            })
            .collect()
    }

    /// Every record's payload, segment by segment in commit order: each chain's records in
    /// order, chains interleaved. `progress` hears (bytes read, bytes in all).
    fn visit_payloads(
        &self,
        visit: &mut PayloadVisit<'_>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        self.visit_frames(
            &mut |n, frames| {
                for (offset, payload) in frames {
                    let offset = u32::try_from(*offset).unwrap_or(u32::MAX);
                    if visit(n, offset, payload)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
                Ok(ControlFlow::Continue(()))
            },
            progress,
        )
    }

    /// Every segment's frames (offset, payload), segment by segment in commit order; a
    /// damaged or torn segment is an error.
    fn visit_frames(
        &self,
        visit: &mut FramesVisit<'_>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        let numbers: Vec<u32> = self
            .sealed
            .iter()
            .map(|s| s.number)
            .chain(std::iter::once(self.tail.number))
            .collect();
        let sizes: Vec<u64> = numbers
            .iter()
            .map(|n| {
                if *n == self.tail.number {
                    Ok(self.tail.len)
                } else {
                    let path = segment_path(&self.dir, *n);
                    std::fs::metadata(&path)
                        .map(|m| m.len())
                        .map_err(io_error(&path))
                }
            })
            .collect::<Result<_, _>>()?;
        let total: u64 = sizes.iter().sum();
        let mut done = 0u64;
        for (n, size) in numbers.iter().zip(&sizes) {
            let path = segment_path(&self.dir, *n);
            let mut bytes = std::fs::read(&path).map_err(io_error(&path))?;
            bytes.truncate(usize::try_from(*size).unwrap_or(usize::MAX));
            let (frames, end) = segment::scan(&bytes);
            let bad = match end {
                segment::End::Clean => None,
                segment::End::Torn(at) => Some((at, "a torn frame".to_string())),
                segment::End::Damaged(at, why) => Some((at, why)),
            };
            if let Some((at, why)) = bad {
                return Err(StoreError::Corrupt {
                    path: path.display().to_string(),
                    offset: at as u64,
                    why,
                });
            }
            if visit(*n, &frames)?.is_break() {
                return Ok(());
            }
            done += size;
            progress(done, total);
        }
        Ok(())
    }

    /// Every record, parsed whole.
    pub(super) fn visit_segments(
        &self,
        visit: &mut dyn FnMut(Stored) -> ControlFlow<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        self.visit_payloads(
            &mut |n, offset, payload| Ok(visit(parse(&self.dir, n, offset, payload)?)),
            progress,
        )
    }

    /// Every record's link, its body hashed but not parsed. A thread reads the segments and
    /// computes their links on every core, a segment ahead of the visit, which takes them
    /// in order.
    pub(super) fn visit_segment_links(
        &self,
        visit: &mut dyn FnMut(Link) -> ControlFlow<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        type Batch = Result<(Vec<Link>, u64, u64), StoreError>;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(1);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let read = self.visit_frames(
                    &mut |n, frames| {
                        let links = links_of(&self.dir, n, frames)?;
                        // The visit stopped: nobody waits for more.
                        Ok(match tx.send(Ok((links, 0, 0))) {
                            Ok(()) => ControlFlow::Continue(()),
                            Err(_) => ControlFlow::Break(()),
                        })
                    },
                    &mut |done, total| {
                        let _ = tx.send(Ok((Vec::new(), done, total)));
                    },
                );
                if let Err(e) = read {
                    let _ = tx.send(Err(e));
                }
            });
            for batch in rx {
                let (links, done, total) = batch?;
                if total > 0 {
                    progress(done, total);
                }
                for link in links {
                    if visit(link).is_break() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    }

    /// The newest `limit` records of a kind, oldest first.
    pub(super) fn recent(
        &mut self,
        kind: RecordKind,
        limit: usize,
    ) -> Result<Vec<Stored>, StoreError> {
        if !super::index::is_outbox(kind) {
            let mut found = std::collections::VecDeque::new();
            self.visit_segments(
                &mut |s| {
                    if s.record.kind == kind {
                        found.push_back(s);
                        if found.len() > limit {
                            found.pop_front();
                        }
                    }
                    ControlFlow::Continue(())
                },
                &mut |_, _| {},
            )?;
            return Ok(found.into());
        }
        let mut newest_first = Vec::new();
        let mut take = |number: u32, offsets: &[u32]| -> Result<bool, StoreError> {
            let path = segment_path(&self.dir, number);
            let file = File::open(&path).map_err(io_error(&path))?;
            for offset in offsets.iter().rev() {
                if newest_first.len() >= limit {
                    return Ok(true);
                }
                let payload = read_frame(&file, &path, *offset)?;
                let stored = parse(&self.dir, number, *offset, &payload)?;
                if stored.record.kind == kind {
                    newest_first.push(stored);
                }
            }
            Ok(newest_first.len() >= limit)
        };
        let mut full = take(self.tail.number, &self.tail.contents.outbox)?;
        for sealed in self.sealed.iter().rev() {
            if full {
                break;
            }
            let offsets = sealed
                .index
                .outbox()
                .map_err(io_error(&segment_path(&self.dir, sealed.number)))?;
            full = take(sealed.number, &offsets)?;
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Every chain the store holds, with its head: from the indexes and the tail (the newest
    /// part of a chain gives its head).
    pub fn chains(&self) -> Result<Vec<(ChainId, crate::evidence::chain::Head)>, StoreError> {
        let mut heads = std::collections::HashMap::new();
        for sealed in &self.sealed {
            let parts = sealed
                .index
                .chains()
                .map_err(io_error(&segment_path(&self.dir, sealed.number)))?;
            for (key, part) in parts {
                if let Some(last) = part.last {
                    heads.insert(key, last);
                }
            }
        }
        for (key, part) in &self.tail.contents.chains {
            if let Some(last) = part.last {
                heads.insert(key.clone(), last);
            }
        }
        let mut out: Vec<_> = heads
            .into_iter()
            .filter_map(|(k, h)| Some((ChainId::from_key(&k)?, h)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn not_a_record(dir: &std::path::Path, number: u32, offset: u32) -> StoreError {
    StoreError::Corrupt {
        path: segment_path(dir, number).display().to_string(),
        offset: u64::from(offset),
        why: "a frame holds no evidence record".into(),
    }
}

fn parse(
    dir: &std::path::Path,
    number: u32,
    offset: u32,
    payload: &[u8],
) -> Result<Stored, StoreError> {
    Stored::from_bytes(payload).ok_or_else(|| not_a_record(dir, number, offset))
}

/// The links of a segment's frames, in order, computed in parallel chunks.
fn links_of(
    dir: &std::path::Path,
    n: u32,
    frames: &[(usize, &[u8])],
) -> Result<Vec<Link>, StoreError> {
    let link = |(offset, payload): &(usize, &[u8])| {
        Summary::of(payload)
            .map(|s| s.link())
            .ok_or_else(|| not_a_record(dir, n, u32::try_from(*offset).unwrap_or(u32::MAX)))
    };
    let workers = std::thread::available_parallelism().map_or(1, |w| w.get().min(8));
    if workers < 2 || frames.len() < 4096 {
        return frames.iter().map(link).collect();
    }
    let chunk = frames.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let parts: Vec<_> = frames
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(link).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut out = Vec::with_capacity(frames.len());
        for part in parts {
            let links = part.join().unwrap_or_else(|_| {
                Err(StoreError::Corrupt {
                    path: dir.display().to_string(),
                    offset: 0,
                    why: "a verification worker stopped".into(),
                })
            })?;
            out.extend(links);
        }
        Ok(out)
    })
}
