//! The heads of the chains this connection wrote, so that a group commit that extends only
//! those skips reading them.
//!
//! Trusting a remembered head is safe because chains are dense: a writer that extended a
//! chain since took position `len`, so a batch linked from the remembered head collides
//! with it on the primary key `(chain, n)`, nothing of the batch is written, and the batch
//! is read and linked again. After a lost connection nothing is remembered: the commit in
//! flight may or may not have landed.

use super::super::chain::{ChainId, Head};
use std::collections::{HashMap, HashSet};

/// Chains remembered at most; past it the memory starts over (a run that ends closes its
/// chain, so long-lived servers see many chains).
const LIMIT: usize = 100_000;

/// A chain's head and the seq of its last record that has a place.
#[derive(Clone, Copy)]
struct Known {
    head: Head,
    last_seq: Option<u64>,
}

#[derive(Default)]
pub(super) struct KnownHeads {
    chains: HashMap<ChainId, Known>,
}

/// Heads and last seqs of a batch's chains, and the chains that must be read.
pub(super) struct Lookup {
    pub heads: HashMap<ChainId, Head>,
    pub last_seqs: HashMap<ChainId, u64>,
    pub unknown: Vec<ChainId>,
}

impl KnownHeads {
    pub(super) fn lookup(&self, chains: HashSet<ChainId>) -> Lookup {
        let mut found = Lookup {
            heads: HashMap::new(),
            last_seqs: HashMap::new(),
            unknown: Vec::new(),
        };
        for chain in chains {
            match self.chains.get(&chain) {
                Some(known) => {
                    if let Some(seq) = known.last_seq {
                        found.last_seqs.insert(chain.clone(), seq);
                    }
                    found.heads.insert(chain, known.head);
                }
                None => found.unknown.push(chain),
            }
        }
        found
    }

    /// What a committed batch left: the chains' new heads and last seqs.
    pub(super) fn learn(
        &mut self,
        heads: &HashMap<ChainId, Head>,
        last_seqs: &HashMap<ChainId, u64>,
    ) {
        if self.chains.len() + heads.len() > LIMIT {
            self.chains.clear();
        }
        for (chain, head) in heads {
            let last_seq = last_seqs.get(chain).copied();
            self.chains.insert(
                chain.clone(),
                Known {
                    head: *head,
                    last_seq,
                },
            );
        }
    }

    /// Chains whose heads another writer may have moved.
    pub(super) fn forget<'a>(&mut self, chains: impl IntoIterator<Item = &'a ChainId>) {
        for chain in chains {
            self.chains.remove(chain);
        }
    }

    pub(super) fn clear(&mut self) {
        self.chains.clear();
    }
}
