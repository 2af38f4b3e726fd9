//! Scope resolution: whether a policy applies to a run, from the run's attributes.

use crate::base::lang::{Scope, Selector};
use crate::runtime::event::RunStart;

/// Evaluates a scope against a run's attributes (absent ones are `""`).
pub(crate) fn matches(scope: &Scope, run: &RunStart) -> bool {
    scope.matches(&|s: &Selector| attribute(s, run))
}

/// A run's value of an attribute a scope or a budget's key names (`""` when absent).
pub(crate) fn attribute<'a>(s: &Selector, run: &'a RunStart) -> &'a str {
    match s {
        Selector::Tenant => &run.tenant,
        Selector::Agent => &run.agent,
        Selector::ApiKey => &run.api_key,
        Selector::HumanActor => &run.human_actor,
        Selector::Label(k) => run.labels.get(k).map_or("", String::as_str),
    }
}
