//! Budget counters as the evidence holds them: a step's decision record lists what it
//! added to each counter of a budget across runs and the counter's value after it
//! (`"budgets":[{"policy","limit","per","window_start","added","counter"}]`). A store keeps
//! one value per counter that agrees with those records, because it takes the updates
//! from the very records it writes.

use super::{EvidenceStore, Record, RecordKind, StoreError};
use std::collections::HashMap;

/// One counter's change, read from a decision record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterUpdate {
    /// The counter's identity: [`counter_id`].
    pub id: String,
    pub policy: String,
    pub monitor: String,
    /// The run's key values, a JSON object in attribute order.
    pub per: String,
    /// RFC 3339 UTC; `None` for a budget without a window.
    pub window_start: Option<String>,
    /// 10⁻⁹ units of the monitor's unit.
    pub added: i64,
    /// The counter after the step, as the step was judged.
    pub counter: i64,
}

impl CounterUpdate {
    /// The value the step was judged on top of.
    pub fn before(&self) -> i64 {
        self.counter.saturating_sub(self.added)
    }
}

/// A counter's identity: policy, monitor, the key's attributes and values (in attribute
/// order) and the window's start, as one JSON text.
pub fn counter_id(
    policy: &str,
    monitor: &str,
    per: &[(String, String)],
    window: Option<&str>,
) -> String {
    let mut per: Vec<&(String, String)> = per.iter().collect();
    per.sort();
    serde_json::json!([policy, monitor, per, window]).to_string()
}

/// Every counter update of `records`, in record order.
pub fn counter_updates<'a>(records: impl IntoIterator<Item = &'a Record>) -> Vec<CounterUpdate> {
    let mut out = Vec::new();
    for r in records {
        if r.kind != RecordKind::Decision {
            continue;
        }
        let Some(entries) = r.body.get("budgets").and_then(|b| b.as_array()) else {
            continue;
        };
        out.extend(entries.iter().filter_map(update_of));
    }
    out
}

fn update_of(entry: &serde_json::Value) -> Option<CounterUpdate> {
    let text = |k: &str| entry.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let per: Vec<(String, String)> = entry
        .get("per")?
        .as_object()?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let (policy, monitor) = (text("policy")?, text("limit")?);
    let window_start = text("window_start");
    let value = |k: &str| text(k).and_then(|t| crate::base::format::parse_value(&t));
    Some(CounterUpdate {
        id: counter_id(&policy, &monitor, &per, window_start.as_deref()),
        per: serde_json::Value::Object(entry.get("per")?.as_object()?.clone()).to_string(),
        policy,
        monitor,
        window_start,
        added: value("added")?,
        counter: value("counter")?,
    })
}

/// A batch's updates of one counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded {
    /// The first update (identity and labels).
    pub first: CounterUpdate,
    /// The value the batch was judged on top of: the first update's.
    pub before: i64,
    /// What the batch adds.
    pub added: i64,
    /// The value after the batch, as judged: the last update's.
    pub after: i64,
}

/// The updates of a batch folded per counter, in first-seen order of the counters.
///
/// A counter's updates are put in the order they were judged in (by the value each was
/// judged on: requests of different runs may reach the writer in another order) and must
/// follow on from each other, each judged on the value the previous one left; otherwise
/// the batch was judged on values no store held, and it is refused as moved.
pub fn fold(updates: &[CounterUpdate]) -> Result<Vec<Folded>, StoreError> {
    let mut ids: Vec<&str> = Vec::new();
    for u in updates {
        if !ids.contains(&u.id.as_str()) {
            ids.push(&u.id);
        }
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut mine: Vec<&CounterUpdate> = updates.iter().filter(|u| u.id == id).collect();
        mine.sort_by_key(|u| u.before());
        let Some(first) = mine.first() else {
            continue;
        };
        let mut folded = Folded {
            first: (*first).clone(),
            before: first.before(),
            added: 0,
            after: first.before(),
        };
        for u in mine {
            if u.before() != folded.after {
                return Err(StoreError::BudgetMoved(format!(
                    "counter {id}: a step of the batch was judged at {}, after {}",
                    u.before(),
                    folded.after
                )));
            }
            folded.added = folded.added.saturating_add(u.added);
            folded.after = u.counter;
        }
        out.push(folded);
    }
    Ok(out)
}

/// What a batch adds to each counter, unchecked: for a writer that did not judge the batch
/// just now (a replay, a queue written after an outage), which only adds.
pub fn sum(updates: &[CounterUpdate]) -> Vec<Folded> {
    let mut out: Vec<Folded> = Vec::new();
    for u in updates {
        match out.iter_mut().find(|f| f.first.id == u.id) {
            Some(f) => f.added = f.added.saturating_add(u.added),
            None => out.push(Folded {
                first: u.clone(),
                before: u.before(),
                added: u.added,
                after: u.counter,
            }),
        }
    }
    out
}

/// One stored counter, as an auditor reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterRow {
    pub policy: String,
    pub monitor: String,
    /// The key's values, a JSON object.
    pub per: String,
    pub window_start: Option<String>,
    /// 10⁻⁹ units of the monitor's unit.
    pub value: i64,
}

/// Every counter of a store with its labels, summed from its decision records, by id.
fn summed<S: EvidenceStore + ?Sized>(
    store: &mut S,
) -> Result<HashMap<String, CounterRow>, StoreError> {
    let mut all: HashMap<String, CounterRow> = HashMap::new();
    store.visit_all(
        &mut |s| {
            for u in counter_updates([&s.record]) {
                let row = all.entry(u.id).or_insert_with(|| CounterRow {
                    policy: u.policy,
                    monitor: u.monitor,
                    per: u.per,
                    window_start: u.window_start,
                    value: 0,
                });
                row.value = row.value.saturating_add(u.added);
            }
            std::ops::ControlFlow::Continue(())
        },
        &mut |_, _| {},
    )?;
    Ok(all)
}

/// Every counter of a store with its labels, in (policy, monitor, window, key) order.
pub(crate) fn rows_of<S: EvidenceStore + ?Sized>(
    store: &mut S,
) -> Result<Vec<CounterRow>, StoreError> {
    let mut rows: Vec<CounterRow> = summed(store)?.into_values().collect();
    rows.sort_by(|a, b| {
        (&a.policy, &a.monitor, &a.window_start, &a.per).cmp(&(
            &b.policy,
            &b.monitor,
            &b.window_start,
            &b.per,
        ))
    });
    Ok(rows)
}

/// Every counter of a store's value, by id.
pub(crate) fn sum_all<S: EvidenceStore + ?Sized>(
    store: &mut S,
) -> Result<HashMap<String, i64>, StoreError> {
    Ok(summed(store)?
        .into_iter()
        .map(|(id, row)| (id, row.value))
        .collect())
}

/// Whether a batch's updates were judged on the values `current` gives, for a writer that
/// judged them itself: `Err` names the first counter that moved.
pub(crate) fn check_before(
    folded: &[Folded],
    current: &HashMap<String, i64>,
) -> Result<(), StoreError> {
    for f in folded {
        let now = current.get(&f.first.id).copied().unwrap_or(0);
        if now != f.before {
            return Err(StoreError::BudgetMoved(format!(
                "counter {} is {now}, judged at {}",
                f.first.id, f.before
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(before: i64, added: i64) -> CounterUpdate {
        CounterUpdate {
            id: "k".into(),
            policy: "p".into(),
            monitor: "m".into(),
            per: "{}".into(),
            window_start: None,
            added,
            counter: before + added,
        }
    }

    #[test]
    fn a_batch_folds_its_steps_in_the_order_they_were_judged() {
        // Requests of two runs reached the writer in the other order.
        let folded = fold(&[update(110, 10), update(100, 10)]).unwrap();
        assert_eq!(
            (folded[0].before, folded[0].added, folded[0].after),
            (100, 20, 120)
        );
    }

    #[test]
    fn a_batch_whose_steps_do_not_follow_on_is_refused() {
        // The step judged at 110 followed one that is not in the batch.
        match fold(&[update(100, 5), update(110, 10)]) {
            Err(StoreError::BudgetMoved(_)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(sum(&[update(100, 5), update(110, 10)])[0].added, 15);
    }
}
