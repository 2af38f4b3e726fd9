//! The file store's budget counters: summed from the stored decisions when first asked
//! (the store has one writer, so its own appends keep them current after that).

use super::FileStore;
use crate::evidence::budgets::{self, Folded};
use crate::evidence::{Sealed, StoreError};
use std::collections::HashMap;

impl FileStore {
    /// Every counter, summed from the stored decisions once.
    fn counters_loaded(&mut self) -> Result<&mut HashMap<String, i64>, StoreError> {
        if self.counters.is_none() {
            let all = budgets::sum_all(self)?;
            self.counters = Some(all);
        }
        Ok(self.counters.get_or_insert_with(HashMap::new))
    }

    pub(super) fn counter_values(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<String, i64>, StoreError> {
        let all = self.counters_loaded()?;
        Ok(ids
            .iter()
            .map(|id| (id.clone(), all.get(id).copied().unwrap_or(0)))
            .collect())
    }

    /// The counter updates of records about to be written, folded; for a writer that judged
    /// them (`exclusive`), refused as fenced when a counter is not what they were judged on.
    pub(super) fn counters_before_write(
        &mut self,
        fresh: &[&Sealed],
        exclusive: bool,
    ) -> Result<Vec<Folded>, StoreError> {
        let updates = budgets::counter_updates(fresh.iter().map(|s| s.record()));
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        // Counters not summed yet take these records when they are (from the store).
        if !exclusive {
            return Ok(budgets::sum(&updates));
        }
        let all = self.counters_loaded()?;
        let folded = budgets::fold(&updates)?;
        budgets::check_before(&folded, all)?;
        Ok(folded)
    }

    /// After the write: the counters take what it added.
    pub(super) fn counters_written(&mut self, folded: &[Folded]) {
        if let Some(all) = self.counters.as_mut() {
            for f in folded {
                let v = all.entry(f.first.id.clone()).or_insert(0);
                *v = v.saturating_add(f.added);
            }
        }
    }
}
