//! Lowering: the checked program ([`hir`]) to bytecode ([`Program`]).
//!
//! Decides everything that does not change per step: field slots, the monitors limits
//! reach (in dependency order), aggregates shared by structure, string and label tables,
//! and each policy's meaning hash. Never fails on a checked program except for shapes the
//! stdlib alone could write (a `let` that derives a string).

use super::bytecode::*;
use super::meaning;
use crate::base::lang::{BinOp, Unit};
use crate::check::hir::{self, ExprKind, FieldId, MonitorId, Value};
use std::collections::{BTreeMap, HashMap};

/// Why a checked program could not be lowered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LowerError {
    #[error("field `{0}` derives a {1} value; derived fields are numbers or booleans")]
    DerivedKind(String, &'static str),
    #[error("the program has more than 65,535 {0}")]
    TooMany(&'static str),
}

/// Lowers a checked program.
pub(crate) fn lower(program: &hir::Program) -> Result<Program, LowerError> {
    let mut l = Lowerer::new(program);
    l.fields()?;
    let order = reachable_monitors(program);
    for id in &order {
        l.monitor(*id)?;
    }
    l.channels();
    let mut policies = Vec::new();
    for p in &program.policies {
        policies.push(l.policy(p)?);
    }
    policies.sort_by(|a, b| (a.precedence, &a.name).cmp(&(b.precedence, &b.name)));
    Ok(Program {
        strings: l.strings.into_keys_ordered(),
        labels: l.labels.into_keys_ordered(),
        signals: l.signals,
        fields: l.fields,
        num_fields: l.counts[0],
        bool_fields: l.counts[1],
        str_fields: l.counts[2],
        aggregates: l.aggregates,
        monitors: l.monitors,
        channels: l.channels,
        policies,
    })
}

/// Monitors some limit reads, directly or through other monitors, dependencies first.
fn reachable_monitors(program: &hir::Program) -> Vec<MonitorId> {
    let mut order = Vec::new();
    let mut seen = vec![false; program.monitors.len()];
    for p in &program.policies {
        for limit in &p.limits {
            visit_monitor(program, limit.monitor, &mut seen, &mut order);
        }
    }
    order
}

fn visit_monitor(
    program: &hir::Program,
    id: MonitorId,
    seen: &mut [bool],
    order: &mut Vec<MonitorId>,
) {
    match seen.get_mut(id.0 as usize) {
        Some(s) if !*s => *s = true,
        _ => return,
    }
    if let Some(m) = program.monitors.get(id.0 as usize) {
        for d in m.expr.monitor_refs() {
            visit_monitor(program, d, seen, order);
        }
    }
    order.push(id);
}

/// An insertion-ordered interning table.
#[derive(Default)]
struct Interner {
    index: BTreeMap<String, u32>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        let next = u32::try_from(self.index.len()).unwrap_or(u32::MAX);
        *self.index.entry(s.to_string()).or_insert(next)
    }

    fn into_keys_ordered(self) -> Vec<String> {
        let mut pairs: Vec<(u32, String)> = self.index.into_iter().map(|(k, v)| (v, k)).collect();
        pairs.sort();
        pairs.into_iter().map(|(_, k)| k).collect()
    }
}

struct Lowerer<'p> {
    program: &'p hir::Program,
    strings: Interner,
    labels: Interner,
    signals: Vec<(String, Unit)>,
    fields: Vec<FieldDesc>,
    /// HIR field → (kind, slot).
    field_slots: BTreeMap<FieldId, (Kind, u16)>,
    counts: [u16; 3],
    aggregates: Vec<AggDesc>,
    agg_index: HashMap<AggDesc, u16>,
    monitors: Vec<MonitorDesc>,
    monitor_index: BTreeMap<MonitorId, u16>,
    channels: Vec<ChannelDesc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Num,
    Bool,
    Str,
}

fn kind_of(unit: Unit) -> Option<Kind> {
    match unit {
        Unit::Bool => Some(Kind::Bool),
        Unit::String => Some(Kind::Str),
        Unit::Map => None,
        _ => Some(Kind::Num),
    }
}

fn small(n: usize, what: &'static str) -> Result<u16, LowerError> {
    u16::try_from(n).map_err(|_| LowerError::TooMany(what))
}

impl<'p> Lowerer<'p> {
    fn new(program: &'p hir::Program) -> Lowerer<'p> {
        Lowerer {
            program,
            strings: Interner::default(),
            labels: Interner::default(),
            signals: Vec::new(),
            fields: Vec::new(),
            field_slots: BTreeMap::new(),
            counts: [0; 3],
            aggregates: Vec::new(),
            agg_index: HashMap::new(),
            monitors: Vec::new(),
            monitor_index: BTreeMap::new(),
            channels: Vec::new(),
        }
    }

    /// Assigns slots: event and metric fields first, then derived fields in an order in
    /// which each reads only fields before it.
    fn fields(&mut self) -> Result<(), LowerError> {
        let program = self.program;
        for (i, f) in program.fields.iter().enumerate() {
            let source = match &f.source {
                hir::FieldSource::Event => EventField::from_name(&f.name).map(FieldSource::Event),
                hir::FieldSource::Metric(name) => {
                    self.signals.push((name.clone(), f.unit));
                    Some(FieldSource::Metric(small(
                        self.signals.len() - 1,
                        "signals",
                    )?))
                }
                hir::FieldSource::Derived(_) => None,
            };
            if let Some(source) = source {
                self.add_field(FieldId(u32::try_from(i).unwrap_or(u32::MAX)), f, source)?;
            }
        }
        let mut pending: Vec<usize> = (0..program.fields.len())
            .filter(|i| {
                matches!(
                    program.fields.get(*i).map(|f| &f.source),
                    Some(hir::FieldSource::Derived(_))
                )
            })
            .collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for i in pending {
                let Some(f) = program.fields.get(i) else {
                    continue;
                };
                let hir::FieldSource::Derived(expr) = &f.source else {
                    continue;
                };
                if !self.fields_ready(expr) {
                    rest.push(i);
                    continue;
                }
                let code = self.code(expr)?;
                self.add_field(
                    FieldId(u32::try_from(i).unwrap_or(u32::MAX)),
                    f,
                    FieldSource::Derived(code),
                )?;
            }
            // The checker rejects cyclic fields, so every pass makes progress.
            if rest.len() == before {
                break;
            }
            pending = rest;
        }
        Ok(())
    }

    fn fields_ready(&self, e: &hir::Expr) -> bool {
        match &e.kind {
            ExprKind::Field(id) => self.field_slots.contains_key(id),
            ExprKind::Neg(x) | ExprKind::Not(x) => self.fields_ready(x),
            ExprKind::Binary(_, a, b) => self.fields_ready(a) && self.fields_ready(b),
            ExprKind::In(a, list) => {
                self.fields_ready(a) && list.iter().all(|x| self.fields_ready(x))
            }
            _ => true,
        }
    }

    fn add_field(
        &mut self,
        id: FieldId,
        f: &hir::Field,
        source: FieldSource,
    ) -> Result<(), LowerError> {
        let Some(kind) = kind_of(f.unit) else {
            return Ok(()); // run.labels: read through `Label`
        };
        if matches!(source, FieldSource::Derived(_)) && kind == Kind::Str {
            return Err(LowerError::DerivedKind(f.name.clone(), "string"));
        }
        let counter = match kind {
            Kind::Num => &mut self.counts[0],
            Kind::Bool => &mut self.counts[1],
            Kind::Str => &mut self.counts[2],
        };
        let slot = *counter;
        *counter = counter
            .checked_add(1)
            .ok_or(LowerError::TooMany("fields"))?;
        self.field_slots.insert(id, (kind, slot));
        self.fields.push(FieldDesc {
            name: f.name.clone(),
            unit: f.unit,
            slot,
            source,
        });
        Ok(())
    }

    fn monitor(&mut self, id: MonitorId) -> Result<(), LowerError> {
        let Some(m) = self.program.monitors.get(id.0 as usize) else {
            return Ok(());
        };
        let code = self.code(&m.expr)?;
        self.monitors.push(MonitorDesc {
            id_name: m.id_name.clone(),
            unit: m.unit,
            code,
        });
        self.monitor_index
            .insert(id, small(self.monitors.len() - 1, "monitors")?);
        Ok(())
    }

    fn channels(&mut self) {
        for c in &self.program.channels {
            self.channels.push(ChannelDesc {
                name: c.name.clone(),
                kind: c.kind,
                args: c.args.clone(),
            });
        }
    }

    fn actions(a: &hir::Actions) -> ActionsDesc {
        ActionsDesc {
            enforcement: a.enforcement,
            alerts: a.alerts.clone(),
        }
    }

    fn policy(&mut self, p: &hir::Policy) -> Result<PolicyDesc, LowerError> {
        let mut limits = Vec::new();
        for l in &p.limits {
            let monitor = self
                .monitor_index
                .get(&l.monitor)
                .copied()
                .ok_or(LowerError::TooMany("monitors"))?;
            let near_at = l.near.as_ref().map(|n| near_threshold(l.value, n.percent));
            let lowest_threshold = match near_at {
                Some(Some(at)) => at.min(l.value),
                _ => l.value,
            };
            limits.push(LimitDesc {
                monitor,
                lowest_threshold,
                name: l.name.clone(),
                value: l.value,
                unit: l.unit,
                budget: l.budget.clone(),
                near: l.near.as_ref().map(|n| NearDesc {
                    percent: n.percent,
                    near_at: near_threshold(l.value, n.percent),
                    actions: Self::actions(&n.actions),
                }),
                breach: Self::actions(&l.breach),
            });
        }
        let mut rules = Vec::new();
        for r in &p.rules {
            let kind = match r.kind {
                hir::RuleKind::Raise { limit, ceiling } => RuleKindDesc::Raise {
                    limit: small(limit, "limits")?,
                    ceiling,
                },
                hir::RuleKind::Suspend => RuleKindDesc::Suspend,
                hir::RuleKind::Resume => RuleKindDesc::Resume,
            };
            rules.push(RuleDesc {
                grantee: r.grantee.clone(),
                kind,
                ttl: r.ttl,
                requires_reason: r.requires_reason,
                approvals: r.approvals,
            });
        }
        Ok(PolicyDesc {
            name: p.name.clone(),
            version: p.version,
            description: p.description.clone(),
            hash: meaning::policy_hash(self.program, p),
            scope: p.scope.clone(),
            precedence: p.precedence,
            conflict: p.conflict,
            bind: p.bind,
            on_error: p.on_error,
            prompt_logging: p.prompt_logging,
            pii_capture: p.pii_capture,
            limits,
            max_per_run: p.max_per_run,
            min_interval: p.min_interval,
            rules,
        })
    }

    // ----- code generation ----------------------------------------------------------

    fn code(&mut self, e: &hir::Expr) -> Result<Code, LowerError> {
        let mut ops = Vec::new();
        self.emit(e, &mut ops)?;
        let max_stack = max_stack(&ops);
        Ok(Code { ops, max_stack })
    }

    fn emit(&mut self, e: &hir::Expr, ops: &mut Vec<Op>) -> Result<(), LowerError> {
        match &e.kind {
            ExprKind::Const(Value::Num(n)) => ops.push(Op::Num(*n)),
            ExprKind::Const(Value::Bool(b)) => ops.push(Op::Bool(*b)),
            ExprKind::Const(Value::Str(s)) => ops.push(Op::Str(self.strings.intern(s))),
            ExprKind::Field(id) => {
                let op = match self.field_slots.get(id) {
                    Some((Kind::Num, slot)) => Op::NumField(*slot),
                    Some((Kind::Bool, slot)) => Op::BoolField(*slot),
                    Some((Kind::Str, slot)) => Op::StrField(*slot),
                    None => return Err(LowerError::TooMany("fields")),
                };
                ops.push(op);
            }
            ExprKind::Label(key) => ops.push(Op::Label(small(
                self.labels.intern(key) as usize,
                "labels",
            )?)),
            ExprKind::Monitor(id) => {
                let index = self
                    .monitor_index
                    .get(id)
                    .copied()
                    .ok_or(LowerError::TooMany("monitors"))?;
                ops.push(Op::Monitor(index));
            }
            ExprKind::Neg(x) => {
                self.emit(x, ops)?;
                ops.push(Op::Neg);
            }
            ExprKind::Not(x) => {
                self.emit(x, ops)?;
                ops.push(Op::Not);
            }
            ExprKind::Binary(op, a, b) => self.emit_binary(*op, a, b, ops)?,
            ExprKind::In(a, list) => {
                self.emit(a, ops)?;
                for x in list {
                    self.emit(x, ops)?;
                }
                ops.push(Op::In(small(list.len(), "list items")?));
            }
            ExprKind::Agg {
                func,
                arg,
                filter,
                window,
            } => {
                let desc = AggDesc {
                    func: *func,
                    arg: arg.as_deref().map(|a| self.code(a)).transpose()?,
                    filter: filter.as_deref().map(|f| self.code(f)).transpose()?,
                    window: window.unwrap_or(0),
                };
                // `count(cond)` is a count with a filter.
                let desc = if *func == crate::base::lang::AggFunc::Count {
                    AggDesc {
                        arg: None,
                        filter: desc.arg.or(desc.filter),
                        ..desc
                    }
                } else {
                    desc
                };
                let index = match self.agg_index.get(&desc) {
                    Some(i) => *i,
                    None => {
                        let i = small(self.aggregates.len(), "aggregates")?;
                        self.aggregates.push(desc.clone());
                        self.agg_index.insert(desc, i);
                        i
                    }
                };
                ops.push(Op::Agg(index));
            }
        }
        Ok(())
    }

    fn emit_binary(
        &mut self,
        op: BinOp,
        a: &hir::Expr,
        b: &hir::Expr,
        ops: &mut Vec<Op>,
    ) -> Result<(), LowerError> {
        if matches!(op, BinOp::And | BinOp::Or) {
            self.emit(a, ops)?;
            let jump_at = ops.len();
            ops.push(Op::AndJump(0));
            self.emit(b, ops)?;
            let target =
                u32::try_from(ops.len()).map_err(|_| LowerError::TooMany("instructions"))?;
            if let Some(slot) = ops.get_mut(jump_at) {
                *slot = if op == BinOp::And {
                    Op::AndJump(target)
                } else {
                    Op::OrJump(target)
                };
            }
            return Ok(());
        }
        if let Some(fused) = self.fuse(op, a, b) {
            ops.push(fused);
            return Ok(());
        }
        self.emit(a, ops)?;
        self.emit(b, ops)?;
        ops.push(match op {
            BinOp::Add => Op::Add,
            BinOp::Sub => Op::Sub,
            BinOp::Mul => Op::Mul,
            BinOp::Div => Op::Div,
            BinOp::Eq => Op::Eq(false),
            BinOp::Ne => Op::Eq(true),
            BinOp::Lt => Op::Cmp(Cmp::Lt),
            BinOp::Le => Op::Cmp(Cmp::Le),
            BinOp::Gt => Op::Cmp(Cmp::Gt),
            BinOp::Ge => Op::Cmp(Cmp::Ge),
            BinOp::And | BinOp::Or => Op::Not, // handled above
        });
        Ok(())
    }
}

impl Lowerer<'_> {
    /// A single instruction for `field == "const"` and `field <cmp> number`, the shapes
    /// filters are made of. Same meaning as the unfused sequence: a field always has a
    /// value, so no-value and error cases cannot arise.
    fn fuse(&mut self, op: BinOp, a: &hir::Expr, b: &hir::Expr) -> Option<Op> {
        let (field, konst, flipped) = match (&a.kind, &b.kind) {
            (ExprKind::Field(f), ExprKind::Const(c)) => (f, c, false),
            (ExprKind::Const(c), ExprKind::Field(f)) => (f, c, true),
            _ => return None,
        };
        let (kind, slot) = *self.field_slots.get(field)?;
        match (kind, konst, op) {
            (Kind::Str, Value::Str(s), BinOp::Eq | BinOp::Ne) => Some(Op::FieldEqStr(
                slot,
                self.strings.intern(s),
                op == BinOp::Ne,
            )),
            (Kind::Num, Value::Num(n), BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge) => {
                let cmp = match (op, flipped) {
                    (BinOp::Lt, false) | (BinOp::Gt, true) => Cmp::Lt,
                    (BinOp::Le, false) | (BinOp::Ge, true) => Cmp::Le,
                    (BinOp::Gt, false) | (BinOp::Lt, true) => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                Some(Op::FieldCmpNum(slot, cmp, *n))
            }
            _ => None,
        }
    }
}

/// The deepest the stack gets along the fall-through path (jumps only shorten it).
pub(crate) fn max_stack(ops: &[Op]) -> u16 {
    let (mut depth, mut max) = (0i64, 0i64);
    for op in ops {
        depth += op.stack_effect();
        max = max.max(depth);
    }
    u16::try_from(max).unwrap_or(u16::MAX)
}
