//! `GET /metrics`: Prometheus text exposition of what the server has done.

use crate::runtime::decision::{Action, Decision};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const ACTIONS: [&str; 6] = ["continue", "pause", "stop", "kill", "refused", "rejected"];
const SIGNALS: [&str; 4] = ["near", "breach", "error", "conflict"];
const CHANNELS: [&str; 3] = ["webhook", "slack", "email"];

#[derive(Debug, Default)]
pub struct Metrics {
    steps: AtomicU64,
    decisions: [AtomicU64; 6],
    signals: [AtomicU64; 4],
    commits: AtomicU64,
    commit_failures: AtomicU64,
    commit_micros: AtomicU64,
    /// Whether the evidence store is down (set and cleared by the writer).
    store_down: AtomicBool,
    /// Records, and their bytes, waiting for the store.
    queued: AtomicU64,
    queued_bytes: AtomicU64,
    /// Delivery attempts by channel kind: delivered, then failed.
    deliveries: [[AtomicU64; 2]; 3],
    /// Runs loaded from the store (at start, or on a request for a run not held).
    runs_loaded: AtomicU64,
    /// Requests judged again because another server extended their run first.
    fenced: AtomicU64,
    /// Runs whose evidence did not judge again to what it holds: never served.
    runs_refused: AtomicU64,
    /// Latency by route, spend and tokens by tenant and policy, failures by channel.
    labelled: std::sync::Mutex<super::histogram::Labelled>,
}

fn action_index(a: Action) -> usize {
    match a {
        Action::Continue => 0,
        Action::Pause => 1,
        Action::Stop => 2,
        Action::Kill => 3,
        Action::Refused => 4,
        Action::Rejected => 5,
    }
}

impl Metrics {
    pub(crate) fn decision(&self, d: &Decision) {
        if d.event == Some("step") && d.seq.is_some() {
            self.steps.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = self.decisions.get(action_index(d.action)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        for s in &d.signals {
            let counter = SIGNALS
                .iter()
                .position(|k| *k == s.kind)
                .and_then(|i| self.signals.get(i));
            if let Some(c) = counter {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn store_commit(&self, took: std::time::Duration, ok: bool) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.commit_failures.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.commit_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(crate) fn store_down(&self) -> bool {
        self.store_down.load(Ordering::SeqCst)
    }

    pub(crate) fn set_store_down(&self, down: bool) {
        self.store_down.store(down, Ordering::SeqCst);
    }

    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::SeqCst)
    }

    pub(crate) fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::SeqCst)
    }

    pub(crate) fn set_queued(&self, n: usize, bytes: usize) {
        self.queued
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::SeqCst);
        self.queued_bytes
            .store(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// One delivery attempt to a channel of `kind` (`webhook`, `slack`, `email`).
    pub(crate) fn delivery(&self, kind: &str, delivered: bool) {
        let slot = CHANNELS
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.deliveries.get(i))
            .and_then(|pair| pair.get(usize::from(!delivered)));
        if let Some(c) = slot {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The labelled series, to update.
    pub(crate) fn labelled(&self) -> Option<std::sync::MutexGuard<'_, super::histogram::Labelled>> {
        self.labelled.lock().ok()
    }

    pub(crate) fn run_loaded(&self) {
        self.runs_loaded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fenced(&self) {
        self.fenced.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn run_refused(&self) {
        self.runs_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# HELP lever_steps_total Steps judged.\n# TYPE lever_steps_total counter\n");
        out.push_str(&format!("lever_steps_total {}\n", get(&self.steps)));
        out.push_str("# HELP lever_decisions_total Decisions answered, by action.\n# TYPE lever_decisions_total counter\n");
        for (name, c) in ACTIONS.iter().zip(&self.decisions) {
            out.push_str(&format!(
                "lever_decisions_total{{action=\"{name}\"}} {}\n",
                get(c)
            ));
        }
        out.push_str("# HELP lever_signals_total Signals emitted, by kind.\n# TYPE lever_signals_total counter\n");
        for (name, c) in SIGNALS.iter().zip(&self.signals) {
            out.push_str(&format!(
                "lever_signals_total{{kind=\"{name}\"}} {}\n",
                get(c)
            ));
        }
        out.push_str("# HELP lever_store_commit_seconds Evidence group commits and their duration.\n# TYPE lever_store_commit_seconds summary\n");
        out.push_str(&format!(
            "lever_store_commit_seconds_sum {:.6}\nlever_store_commit_seconds_count {}\n",
            get(&self.commit_micros) as f64 / 1e6,
            get(&self.commits)
        ));
        out.push_str("# HELP lever_store_commit_failures_total Evidence group commits that failed.\n# TYPE lever_store_commit_failures_total counter\n");
        out.push_str(&format!(
            "lever_store_commit_failures_total {}\n",
            get(&self.commit_failures)
        ));
        out.push_str(&format!(
            "# HELP lever_store_up Whether the evidence store is available.\n# TYPE lever_store_up gauge\nlever_store_up {}\n",
            u8::from(!self.store_down())
        ));
        out.push_str(&format!(
            "# HELP lever_store_queued_records Records waiting for the evidence store.\n# TYPE lever_store_queued_records gauge\nlever_store_queued_records {}\n",
            self.queued()
        ));
        out.push_str(&format!(
            "# HELP lever_store_queued_bytes Bytes of evidence waiting for the store (spilled).\n# TYPE lever_store_queued_bytes gauge\nlever_store_queued_bytes {}\n",
            self.queued_bytes()
        ));
        for (name, help, c) in [
            (
                "lever_runs_loaded_total",
                "Runs rebuilt from the evidence store (at start, or on a request for a run this server did not hold).",
                &self.runs_loaded,
            ),
            (
                "lever_requests_fenced_total",
                "Requests judged again because another server extended their run first.",
                &self.fenced,
            ),
            (
                "lever_runs_refused_total",
                "Runs whose evidence did not judge again to what it holds; they are not served.",
                &self.runs_refused,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                get(c)
            ));
        }
        out.push_str("# HELP lever_alert_deliveries_total Alert delivery attempts, by channel kind and result.\n# TYPE lever_alert_deliveries_total counter\n");
        for (kind, pair) in CHANNELS.iter().zip(&self.deliveries) {
            for (result, c) in ["delivered", "failed"].iter().zip(pair) {
                out.push_str(&format!(
                    "lever_alert_deliveries_total{{channel_kind=\"{kind}\",result=\"{result}\"}} {}\n",
                    get(c)
                ));
            }
        }
        if let Some(l) = self.labelled() {
            l.render(&mut out);
        }
        out
    }
}
