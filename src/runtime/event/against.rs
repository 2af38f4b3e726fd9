//! An event checked against the program that judges its run: a raise's `to` must fit the
//! unit of the limit it names.

use super::{EventKind, OverrideRequest, RejectCode, Rejection};
use crate::base::lang::Unit;
use crate::compile::bytecode::Program;

/// A raise's `to` against the unit of the limit it names, when the program that judges
/// the run knows that limit (whatever the run's state: a value is checked before the run).
pub(crate) fn check_raise(
    req: &OverrideRequest,
    program: Option<&Program>,
) -> Result<(), Rejection> {
    let (Some(target), Some(limit), Some(program)) = (&req.to, &req.limit, program) else {
        return Ok(());
    };
    match limit_unit(program, &req.policy, limit) {
        Some(unit) if !target.to.fits(unit) => Err(Rejection {
            code: RejectCode::InvalidField,
            detail: format!(
                "`to` {:?} does not fit the `{}` limit {limit}",
                target.text,
                unit.name(),
            ),
            run_id: Some(req.run_id.clone()),
            ts: Some(req.ts),
            event: Some(EventKind::Override),
        }),
        _ => Ok(()),
    }
}

/// The unit of a policy's limit in a program, when the program has that policy and limit
/// (a merged program may hold two policies of one name: the first is the run's own).
fn limit_unit(program: &Program, policy: &str, limit: &str) -> Option<Unit> {
    program
        .policies
        .iter()
        .filter(|p| p.name == policy)
        .flat_map(|p| p.limits.iter())
        .find(|l| l.name == limit)
        .map(|l| l.unit)
}
