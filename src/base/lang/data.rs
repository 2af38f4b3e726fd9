//! The language's values that carry data and reach the artifact: channel references,
//! channel arguments, scopes and override grantees. Each is encoded by explicit tag
//! ([`super::tagged`]); the numbers below are the artifact format.

use serde::de::SeqAccess;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::tagged::{self, Tagged, next, unknown};

/// A channel a threshold alerts: `ui` is built in and has no index; a declared channel is
/// an index into the program's channels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelRef {
    Ui,
    Declared(u32),
}

/// A channel argument as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    Str(String),
    /// `env("VAR")`, resolved by the runtime at delivery time.
    Env(String),
    List(Vec<String>),
}

/// A run attribute a scope compares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    Tenant,
    Agent,
    ApiKey,
    HumanActor,
    Label(String),
}

/// A limit shared across runs: the runs whose attributes `per` have the same values share
/// one counter per window. Windows are fixed and aligned to the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Budget {
    pub per: Vec<Selector>,
    /// Nanoseconds; `None`: the budget never resets.
    pub window: Option<i64>,
}

impl Budget {
    /// The start of the window holding `at` (nanoseconds since the epoch).
    pub(crate) fn window_start(&self, at: i64) -> Option<i64> {
        self.window.map(|w| at.div_euclid(w) * w)
    }

    /// As a policy writes it: `per api_key per 1d`, `per (tenant, agent)`.
    pub(crate) fn text(&self) -> String {
        let key: Vec<String> = self.per.iter().map(Selector::text).collect();
        let key = match key.as_slice() {
            [one] => one.clone(),
            _ => format!("({})", key.join(", ")),
        };
        match self.window {
            Some(w) => format!("per {key} per {}", crate::base::format::duration(w)),
            None => format!("per {key}"),
        }
    }
}

impl Selector {
    /// The attribute as a policy writes it: `api_key`, `labels["team"]`.
    pub(crate) fn text(&self) -> String {
        match self {
            Selector::Tenant => "tenant".into(),
            Selector::Agent => "agent".into(),
            Selector::ApiKey => "api_key".into(),
            Selector::HumanActor => "human_actor".into(),
            Selector::Label(k) => format!("labels[{k:?}]"),
        }
    }
}

/// Which runs a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Eq(Selector, String),
    In(Selector, Vec<String>),
    Not(Box<Scope>),
    And(Box<Scope>, Box<Scope>),
    Or(Box<Scope>, Box<Scope>),
}

impl Scope {
    /// Whether a run whose attributes `get` reads is in the scope (absent ones are `""`).
    pub(crate) fn matches<'a>(&self, get: &impl Fn(&Selector) -> &'a str) -> bool {
        match self {
            Scope::All => true,
            Scope::Eq(s, v) => get(s) == v,
            Scope::In(s, vs) => vs.iter().any(|v| v == get(s)),
            Scope::Not(x) => !x.matches(get),
            Scope::And(a, b) => a.matches(get) && b.matches(get),
            Scope::Or(a, b) => a.matches(get) || b.matches(get),
        }
    }
}

/// Who an override rule grants: a role or one named actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    Role(String),
    Actor(String),
}

impl Serialize for ChannelRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ChannelRef::Ui => tagged::write(s, 0, &()),
            ChannelRef::Declared(i) => tagged::write(s, 1, i),
        }
    }
}

impl Tagged for ChannelRef {
    const NAME: &'static str = "channel reference";
    fn read<'de, A: SeqAccess<'de>>(tag: u8, seq: &mut A) -> Result<Self, A::Error> {
        match tag {
            0 => next::<A, ()>(seq).map(|()| ChannelRef::Ui),
            1 => next(seq).map(ChannelRef::Declared),
            t => Err(unknown(Self::NAME, t)),
        }
    }
}

impl Serialize for ArgValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ArgValue::Str(v) => tagged::write(s, 0, v),
            ArgValue::Env(v) => tagged::write(s, 1, v),
            ArgValue::List(v) => tagged::write(s, 2, v),
        }
    }
}

impl Tagged for ArgValue {
    const NAME: &'static str = "channel argument";
    fn read<'de, A: SeqAccess<'de>>(tag: u8, seq: &mut A) -> Result<Self, A::Error> {
        match tag {
            0 => next(seq).map(ArgValue::Str),
            1 => next(seq).map(ArgValue::Env),
            2 => next(seq).map(ArgValue::List),
            t => Err(unknown(Self::NAME, t)),
        }
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Selector::Tenant => tagged::write(s, 0, &()),
            Selector::Agent => tagged::write(s, 1, &()),
            Selector::ApiKey => tagged::write(s, 2, &()),
            Selector::HumanActor => tagged::write(s, 3, &()),
            Selector::Label(l) => tagged::write(s, 4, l),
        }
    }
}

impl Tagged for Selector {
    const NAME: &'static str = "scope selector";
    fn read<'de, A: SeqAccess<'de>>(tag: u8, seq: &mut A) -> Result<Self, A::Error> {
        let plain = |s: Selector, seq: &mut A| next::<A, ()>(seq).map(|()| s);
        match tag {
            0 => plain(Selector::Tenant, seq),
            1 => plain(Selector::Agent, seq),
            2 => plain(Selector::ApiKey, seq),
            3 => plain(Selector::HumanActor, seq),
            4 => next(seq).map(Selector::Label),
            t => Err(unknown(Self::NAME, t)),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Scope::All => tagged::write(s, 0, &()),
            Scope::Eq(sel, v) => tagged::write(s, 1, &(sel, v)),
            Scope::In(sel, vs) => tagged::write(s, 2, &(sel, vs)),
            Scope::Not(x) => tagged::write(s, 3, x),
            Scope::And(a, b) => tagged::write(s, 4, &(a, b)),
            Scope::Or(a, b) => tagged::write(s, 5, &(a, b)),
        }
    }
}

impl Tagged for Scope {
    const NAME: &'static str = "scope";
    fn read<'de, A: SeqAccess<'de>>(tag: u8, seq: &mut A) -> Result<Self, A::Error> {
        match tag {
            0 => next::<A, ()>(seq).map(|()| Scope::All),
            1 => next(seq).map(|(sel, v)| Scope::Eq(sel, v)),
            2 => next(seq).map(|(sel, vs)| Scope::In(sel, vs)),
            3 => next(seq).map(Scope::Not),
            4 => next(seq).map(|(a, b)| Scope::And(a, b)),
            5 => next(seq).map(|(a, b)| Scope::Or(a, b)),
            t => Err(unknown(Self::NAME, t)),
        }
    }
}

impl Serialize for Grantee {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Grantee::Role(r) => tagged::write(s, 0, r),
            Grantee::Actor(a) => tagged::write(s, 1, a),
        }
    }
}

impl Tagged for Grantee {
    const NAME: &'static str = "grantee";
    fn read<'de, A: SeqAccess<'de>>(tag: u8, seq: &mut A) -> Result<Self, A::Error> {
        match tag {
            0 => next(seq).map(Grantee::Role),
            1 => next(seq).map(Grantee::Actor),
            t => Err(unknown(Self::NAME, t)),
        }
    }
}

macro_rules! deserialize_tagged {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                tagged::read(d)
            }
        }
    )*};
}

deserialize_tagged!(ChannelRef, ArgValue, Selector, Scope, Grantee);

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes are the format: a hand-written expectation per tag.
    #[test]
    fn tags_are_the_encoding() {
        let bytes = |v: &Scope| postcard::to_allocvec(v).unwrap();
        assert_eq!(bytes(&Scope::All), vec![0]);
        assert_eq!(
            bytes(&Scope::Eq(Selector::Agent, "a".into())),
            vec![1, 1, 1, b'a']
        );
        assert_eq!(
            bytes(&Scope::Not(Box::new(Scope::In(
                Selector::Label("l".into()),
                vec![]
            )))),
            vec![3, 2, 4, 1, b'l', 0]
        );
        let g = postcard::to_allocvec(&Grantee::Actor("x".into())).unwrap();
        assert_eq!(g, vec![1, 1, b'x']);
        let c = postcard::to_allocvec(&ChannelRef::Declared(300)).unwrap();
        assert_eq!(c, vec![1, 0xac, 0x02]);
    }

    #[test]
    fn every_value_reads_back() {
        let s = Scope::Or(
            Box::new(Scope::And(
                Box::new(Scope::All),
                Box::new(Scope::Eq(Selector::HumanActor, "h".into())),
            )),
            Box::new(Scope::Not(Box::new(Scope::In(
                Selector::Tenant,
                vec!["t".into(), "u".into()],
            )))),
        );
        let back: Scope = postcard::from_bytes(&postcard::to_allocvec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        for a in [
            ArgValue::Str("s".into()),
            ArgValue::Env("E".into()),
            ArgValue::List(vec!["a".into()]),
        ] {
            let back: ArgValue = postcard::from_bytes(&postcard::to_allocvec(&a).unwrap()).unwrap();
            assert_eq!(back, a);
        }
        let err = postcard::from_bytes::<Grantee>(&[7, 0]).unwrap_err();
        assert!(
            err.to_string().contains("unknown grantee tag 7")
                || matches!(err, postcard::Error::SerdeDeCustom)
        );
    }
}
