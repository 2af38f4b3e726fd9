//! One request at a time per run: a request of a run waits until the run's previous
//! request has had its evidence committed or refused. A refused request is then undone
//! (its run put back as it was) without undoing a later request judged on top of it, and
//! nothing the store did not take ever shapes a decision. Requests of different runs still
//! share group commits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

#[derive(Default)]
pub(crate) struct RunLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A run's turn; the next request of the run goes on when it is dropped.
pub(crate) struct RunTurn<'a> {
    locks: &'a RunLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl RunLocks {
    /// Waits for the run's turn.
    pub(crate) async fn turn(&self, run_id: &str) -> RunTurn<'_> {
        let lock = {
            let mut map = self
                .map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(map.entry(run_id.to_string()).or_default())
        };
        RunTurn {
            locks: self,
            key: run_id.to_string(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for RunTurn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self
            .locks
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget the run's lock once no request holds or waits for it.
        if map
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.key);
        }
    }
}
