//! The runtime: binds an artifact's policies to runs and judges every step.
//!
//! Deterministic and clock-free: the same artifact and events give the same decisions.
//! Per-run state lives in one type, [`Run`], owned by the caller (the replay, the server,
//! or an embedding agent framework); the [`Engine`] holds the artifact and reusable
//! buffers, so the per-step path allocates nothing but the decision it returns.
//!
//! ```
//! use lever::runtime::{Engine, event::{RunStart, Step}};
//! let checked = lever::check::check(lever::source::SourceSet::from_text("p.policy", r#"
//!     import std.llm
//!     policy cap { version 1 scope all limit std.llm.cost to $1.00 { breach => stop } }
//! "#));
//! let artifact = lever::compile::build(&checked, &["p.policy".into()]).unwrap();
//! let mut engine = Engine::new(std::sync::Arc::new(artifact));
//! let start = RunStart { run_id: "r1".into(), ts: 0, tenant: "acme".into(), agent: "bot".into(),
//!     api_key: String::new(), human_actor: String::new(), labels: Default::default(), meta: None };
//! let (mut run, _) = engine.start_run(&start);
//! let mut step = Step { run_id: "r1".into(), ts: 1_000_000_000, cost: 600_000_000,
//!     kind: "llm_call".into(), ..Step::default() };
//! assert_eq!(engine.step(&mut run, &step, &[]).decision.action, lever::runtime::decision::Action::Continue);
//! step.ts += 1_000_000_000;
//! let second = engine.step(&mut run, &step, &[]).decision;
//! assert_eq!(second.action, lever::runtime::decision::Action::Stop);
//! assert_eq!(second.signals[0].kind, "breach");
//! ```

pub(crate) mod arbitrate;
pub mod budget;
pub mod decision;
mod engine;
mod evaluate;
pub mod event;
mod judge;
mod layout;
mod outage;
mod overrides;
mod rebind;
mod records;
mod rejected;
pub mod replay;
mod run;
pub(crate) mod scope;
mod snapshot;
mod status;

use crate::base::lang::Enforcement;
use decision::Decision;

pub use engine::{Engine, Verdict};
pub use run::{Bound, Grant, Run, RunState, Throttle, Totals};

pub use crate::base::lang::Zone;

/// A snapshot of what a run is bound to, recorded when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub hash: String,
    /// Canonical JSON of the snapshot.
    pub body: String,
}

/// An enforced breach, recorded as an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub policy: String,
    pub limit: String,
    pub enforcement: Enforcement,
}

/// What happened to a step's prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptRecord {
    Stored(String),
    Redacted(&'static str),
}

/// A decision and what evidence it needs beyond itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub snapshot: Option<Snapshot>,
    pub incidents: Vec<Incident>,
    pub prompt: Option<PromptRecord>,
}

impl Outcome {
    fn of(decision: Decision) -> Outcome {
        Outcome {
            decision,
            snapshot: None,
            incidents: Vec::new(),
            prompt: None,
        }
    }
}

/// Which engine evaluates a program's bytecode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// The bytecode interpreter: portable, the default.
    #[default]
    Interp,
    /// Native code compiled with Cranelift; an error where the host has no backend.
    Jit,
    /// The JIT where the host supports it, else the interpreter.
    Auto,
}
