//! Deciding while the evidence store is down (DESIGN §7, LANGUAGE §7 `on_error`).
//!
//! A decision is normally answered only after its evidence is durable. While the store is
//! unavailable, a run whose bound policies are all `fail_open` continues, with one `error`
//! signal (`store_unavailable`) per bound policy; any other run is stopped at once, because
//! stopping is safe. The records still wait to be written when the store returns.

use super::decision::{Action, Signal};
use super::{Engine, Outcome, Run, RunState};
use crate::base::lang::OnError;

impl Engine {
    /// Turns a judged step's outcome into the one answered during a store outage.
    pub(crate) fn store_outage(&self, run: &mut Run, outcome: &mut Outcome) {
        let program = self.program();
        let bound: Vec<_> = run
            .bound
            .iter()
            .filter_map(|b| program.policies.get(usize::from(b.policy)))
            .collect();
        let fail_open = !bound.is_empty() && bound.iter().all(|p| p.on_error == OnError::FailOpen);
        let d = &mut outcome.decision;
        for p in &bound {
            d.signals.push(Signal {
                kind: "error",
                policy: p.name.clone(),
                version: p.version,
                policy_hash: p.hash.clone(),
                limit: None,
                observed: None,
                limit_value: None,
                percent: None,
                error: Some("store_unavailable"),
                conflict: None,
                with: None,
                budget: None,
            });
        }
        if fail_open || run.state >= RunState::Stopped {
            return;
        }
        run.state = RunState::Stopped;
        run.state_reason = Some("store_unavailable".into());
        d.action = Action::Stop;
        d.reason = Some("store_unavailable".into());
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::Engine;
    use crate::runtime::decision::Action;
    use crate::runtime::event::{RunStart, Step};
    use std::sync::Arc;

    fn engine(on_error: &str) -> Engine {
        let text = format!(
            "import std.llm\npolicy a {{ version 1 scope all on_error {on_error} limit std.llm.cost to $10 {{ breach => stop }} }}\npolicy b {{ version 1 scope all on_error fail_open precedence 5 limit std.llm.tokens to 1000 tokens {{ breach => stop }} }}"
        );
        let checked =
            crate::check::check(crate::base::source::SourceSet::from_text("p.policy", &text));
        Engine::new(Arc::new(
            crate::compile::build(&checked, &["p.policy".into()]).unwrap(),
        ))
    }

    fn step() -> Step {
        Step {
            run_id: "r".into(),
            ts: 1,
            kind: "llm_call".into(),
            ..Step::default()
        }
    }

    fn start() -> RunStart {
        RunStart {
            run_id: "r".into(),
            ts: 0,
            tenant: "t".into(),
            agent: String::new(),
            api_key: String::new(),
            human_actor: String::new(),
            labels: Default::default(),
            meta: None,
        }
    }

    /// A run's first step, answered during an outage.
    fn outage_step(e: &mut Engine) -> (crate::runtime::Run, crate::runtime::Outcome) {
        let (mut run, _) = e.start_run(&start());
        let mut outcome = e.step(&mut run, &step(), &[]);
        e.store_outage(&mut run, &mut outcome);
        (run, outcome)
    }

    #[test]
    fn all_fail_open_continues_with_an_error_signal_per_policy() {
        let mut e = engine("fail_open");
        let (_, outcome) = outage_step(&mut e);
        assert_eq!(outcome.decision.action, Action::Continue);
        let mut errors: Vec<_> = outcome
            .decision
            .signals
            .iter()
            .map(|s| (s.policy.as_str(), s.error))
            .collect();
        errors.sort();
        assert_eq!(
            errors,
            [
                ("a", Some("store_unavailable")),
                ("b", Some("store_unavailable"))
            ]
        );
    }

    #[test]
    fn any_fail_closed_policy_stops_the_run() {
        let mut e = engine("fail_closed");
        let (mut run, outcome) = outage_step(&mut e);
        assert_eq!(outcome.decision.action, Action::Stop);
        assert_eq!(
            outcome.decision.reason.as_deref(),
            Some("store_unavailable")
        );
        // Later steps are refused: the run is over.
        let next = e.step(&mut run, &step(), &[]);
        assert_eq!(next.decision.action, Action::Refused);
    }
}
