//! Writing through a store outage: a bounded queue in front of a store.
//!
//! Records are queued, then everything queued is written oldest first. When the store
//! fails, the records stay queued (up to the capacity) and the store is dropped; the next
//! write reopens it from its URL, so that what the store holds is read back from its own
//! truth (the disk, or the database) before anything more is written, and records that
//! did reach it are not written twice (ids make writes idempotent).

use super::{EvidenceStore, Record, StoreError, open};

/// Why a write was not made durable.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The store is unavailable; the records are queued and are written first when it returns.
    #[error("{error} ({queued} records queued)")]
    Unavailable { error: StoreError, queued: usize },
    /// The queue is full: these records were not queued.
    #[error("the evidence queue is full ({queued} records wait for the store)")]
    Full { queued: usize },
    /// The store refused the records themselves (a closed chain, a contradiction): not an
    /// outage, and retrying will not help.
    #[error(transparent)]
    Refused(StoreError),
}

pub struct Durable {
    url: String,
    store: Option<Box<dyn EvidenceStore>>,
    queue: Vec<Record>,
    capacity: usize,
}

impl Durable {
    /// Opens the store; it must be available at the start.
    pub fn open(url: &str, capacity: usize) -> Result<Durable, StoreError> {
        Ok(Durable {
            url: url.to_string(),
            store: Some(open(url)?),
            queue: Vec::new(),
            capacity,
        })
    }

    /// The store, if it is open (it is not during an outage).
    pub fn store(&mut self) -> Option<&mut (dyn EvidenceStore + 'static)> {
        self.store.as_deref_mut()
    }

    /// Records waiting for the store, oldest first.
    pub fn queued(&self) -> &[Record] {
        &self.queue
    }

    /// Queues `records` and writes everything queued; `Ok` once all of it is durable.
    pub fn append(&mut self, records: Vec<Record>) -> Result<usize, WriteError> {
        self.enqueue(records)?;
        self.flush()
    }

    /// Queues `records` without writing (during an outage, between attempts to reopen);
    /// `Full` when the queue cannot take them all, and then none are queued.
    pub fn enqueue(&mut self, records: Vec<Record>) -> Result<(), WriteError> {
        if self.queue.len() + records.len() > self.capacity && !records.is_empty() {
            return Err(WriteError::Full {
                queued: self.queue.len(),
            });
        }
        self.queue.extend(records);
        Ok(())
    }

    /// Takes every queued record back out of the queue (after a [`WriteError::Refused`],
    /// to write the records of a group one part at a time).
    pub fn take_queued(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.queue)
    }

    /// Writes everything queued, reopening the store if an outage closed it.
    pub fn flush(&mut self) -> Result<usize, WriteError> {
        let unavailable = |error, queued| WriteError::Unavailable { error, queued };
        if self.store.is_none() {
            match open(&self.url) {
                Ok(s) => self.store = Some(s),
                Err(e) => return Err(unavailable(e, self.queue.len())),
            }
        }
        let Some(store) = self.store.as_mut() else {
            return Ok(0);
        };
        match store.append(&self.queue) {
            Ok(n) => {
                self.queue.clear();
                Ok(n)
            }
            Err(e @ (StoreError::ChainClosed(_) | StoreError::Contradicts(_))) => {
                // Nothing was written; the queue stays as it was for the caller to report.
                Err(WriteError::Refused(e))
            }
            Err(e) => {
                // Never write through a store after a failure: reopen it next time.
                self.store = None;
                Err(unavailable(e, self.queue.len()))
            }
        }
    }
}
