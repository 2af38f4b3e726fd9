//! Serde for enums that carry data, by explicit tag: each variant is written as its
//! number and then its payload, so the encoding cannot follow the declaration order.
//!
//! In postcard the tag is one byte, the same bytes a derived encoding gives variants 0 to
//! 127 (a varint), so artifacts written before tags were explicit read unchanged.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserializer, Serialize};

/// Writes `tag` then `payload` (`()` for a variant without data).
pub(super) fn write<S: Serializer, T: Serialize + ?Sized>(
    s: S,
    tag: u8,
    payload: &T,
) -> Result<S::Ok, S::Error> {
    let mut t = s.serialize_tuple(2)?;
    t.serialize_element(&tag)?;
    t.serialize_element(payload)?;
    t.end()
}

/// An enum read back by tag: `read` takes the payload for `tag` from `seq`.
pub(super) trait Tagged: Sized {
    const NAME: &'static str;
    fn read<'de, A: SeqAccess<'de>>(tag: u8, seq: &mut A) -> Result<Self, A::Error>;
}

pub(super) fn read<'de, D: Deserializer<'de>, T: Tagged>(d: D) -> Result<T, D::Error> {
    d.deserialize_tuple(2, TagVisitor::<T>(PhantomData))
}

/// The next payload element of a variant.
pub(super) fn next<'de, A: SeqAccess<'de>, T: DeserializeOwned>(
    seq: &mut A,
) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| de::Error::custom("a tagged value ends before its payload"))
}

pub(super) fn unknown<E: de::Error>(name: &str, tag: u8) -> E {
    E::custom(format_args!("unknown {name} tag {tag}"))
}

struct TagVisitor<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TagVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a tagged {}", T::NAME)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        let tag: u8 = next(&mut seq)?;
        T::read(tag, &mut seq)
    }
}
