//! A rejected step of a live run is an error of that run (`docs/events.md`, "Nothing a run
//! reports slips past its policies").
//!
//! A step the reader rejects may still carry usage (`"cost_usd":"3.00"`, `"cost":"abc"`),
//! so a client's mistake must not turn enforcement off: every policy bound to the run gets
//! an `error` signal (`rejected_input`), and a `fail_closed` policy that is not suspended
//! stops the run. The line still takes no `seq` and changes no monitor.

use super::decision::{Action, Decision, Signal};
use super::event::{EventKind, Rejection};
use super::{Engine, Run, RunState};
use crate::base::lang::OnError;
use std::sync::Arc;

/// Whether a rejected line is judged as an error of its run, when that run is live: a
/// `step`, or a line of no known type (a misspelled `"stpe"` may carry usage). Run starts,
/// overrides, approvals, deploys and run ends carry no usage, and a retried `run_start`
/// must never stop its run.
pub(crate) fn judged_as_error(rejection: &Rejection) -> bool {
    rejection.run_id.is_some() && matches!(rejection.event, None | Some(EventKind::Step))
}

impl Engine {
    /// Judges a rejected step of a live run under `on_error`.
    pub(crate) fn rejected_step(&self, run: &mut Run, rejection: &Rejection) -> Decision {
        let program = self.program();
        let reason = rejection.reason();
        let mut signals = Vec::new();
        let mut fail_closed = false;
        for bound in &run.bound {
            let Some(policy) = program.policies.get(usize::from(bound.policy)) else {
                continue;
            };
            signals.push(Signal {
                kind: "error",
                policy: policy.name.clone(),
                version: policy.version,
                policy_hash: policy.hash.clone(),
                limit: None,
                observed: None,
                limit_value: None,
                percent: None,
                error: Some("rejected_input"),
                conflict: None,
                with: None,
                budget: None,
            });
            let suspended = bound.suspension.is_some_and(|g| g.active_at(run.clock));
            fail_closed |= policy.on_error == OnError::FailClosed && !suspended;
        }
        let action = if fail_closed && run.state < RunState::Stopped {
            run.state = RunState::Stopped;
            run.state_reason = Some(reason.clone());
            Action::Stop
        } else {
            Action::Rejected
        };
        Decision {
            line: None,
            run_id: Some(Arc::clone(&run.id)),
            seq: None,
            ts: rejection.ts,
            event: rejection.event.map(EventKind::name),
            action,
            reason: Some(reason),
            signals,
            alerts: Vec::new(),
            budgets: Vec::new(),
            override_outcome: None,
            snapshot: Some(Arc::clone(&run.snapshot)),
            artifact: Some(Arc::clone(&self.artifact_id)),
        }
    }
}
