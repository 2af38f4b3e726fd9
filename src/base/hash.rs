//! Small hashes: FNV-1a for maps keyed by short program strings, and hex for digests.

/// FNV-1a: the keys are a program's own string constants and a step's short fields, so a
/// keyed hash (SipHash) buys nothing here and costs a tenth of a step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fnv1a(u64);

/// Hash maps keyed by FNV-1a.
pub(crate) type FnvBuild = std::hash::BuildHasherDefault<Fnv1a>;

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The bytes lowercase hex spells (what [`hex`] writes); `None` for anything else.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .filter(|_| !c.is_ascii_uppercase())
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(u8::try_from(digit(*hi)? << 4 | digit(*lo)?).ok()?),
            _ => None,
        })
        .collect()
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn unhex_reads_back_what_hex_writes_and_nothing_else() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xab, 0xff];
        assert_eq!(super::unhex(&super::hex(&bytes)), Some(bytes.to_vec()));
        assert_eq!(super::unhex(""), Some(Vec::new()));
        for bad in ["0", "0g", "AB", "+1", "é1"] {
            assert_eq!(super::unhex(bad), None, "{bad}");
        }
    }
}
