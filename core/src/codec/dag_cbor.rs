//! The few DAG-CBOR items pinfold reads and writes by hand (CAR headers, cluster DAG
//! nodes): definite-length heads, text, bytes, and links (tag 42 over bytes that start with
//! a 0x00 prefix). DAG-CBOR has no indefinite lengths; a reader refuses them.

use cid::Cid;

pub const UNSIGNED: u8 = 0;
pub const BYTES: u8 = 2;
pub const TEXT: u8 = 3;
pub const ARRAY: u8 = 4;
pub const MAP: u8 = 5;
pub const TAG: u8 = 6;
/// DAG-CBOR's tag for a link.
pub const LINK_TAG: u64 = 42;

/// Items nested deeper than this are not skipped (no stack runs out on hostile input).
const MAX_NESTING: usize = 64;

/// Why the bytes are not the DAG-CBOR item expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DagCborError(pub &'static str);

/// Reads items one after another from a byte slice.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Whether every byte was read.
    pub fn is_at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DagCborError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DagCborError("the bytes end inside an item"))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    /// An item's major type and argument.
    pub fn head(&mut self) -> Result<(u8, u64), DagCborError> {
        let first = self.take(1)?[0];
        let argument = match first & 0x1f {
            n @ 0..=23 => u64::from(n),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().expect("2"))),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().expect("4"))),
            27 => u64::from_be_bytes(self.take(8)?.try_into().expect("8")),
            _ => {
                return Err(DagCborError(
                    "an indefinite length, which DAG-CBOR does not have",
                ))
            }
        };
        Ok((first >> 5, argument))
    }

    /// The argument of an item of type `major` (a count, a number or a tag), else
    /// `otherwise`.
    pub fn expect(&mut self, major: u8, otherwise: &'static str) -> Result<u64, DagCborError> {
        match self.head()? {
            (found, argument) if found == major => Ok(argument),
            _ => Err(DagCborError(otherwise)),
        }
    }

    /// The contents of a byte or text string (`major`), else `otherwise`.
    pub fn length(&mut self, major: u8, otherwise: &'static str) -> Result<&'a [u8], DagCborError> {
        let length = self.expect(major, otherwise)?;
        let length =
            usize::try_from(length).map_err(|_| DagCborError("the bytes end inside an item"))?;
        self.take(length)
    }

    /// A UTF-8 text string, else `otherwise`.
    pub fn text(&mut self, otherwise: &'static str) -> Result<&'a str, DagCborError> {
        std::str::from_utf8(self.length(TEXT, otherwise)?).map_err(|_| DagCborError(otherwise))
    }

    /// A link, else `otherwise`.
    pub fn link(&mut self, otherwise: &'static str) -> Result<Cid, DagCborError> {
        if self.expect(TAG, otherwise)? != LINK_TAG {
            return Err(DagCborError(otherwise));
        }
        match self.length(BYTES, otherwise)? {
            [0x00, cid @ ..] => Cid::try_from(cid).map_err(|_| DagCborError(otherwise)),
            _ => Err(DagCborError(otherwise)),
        }
    }

    /// Passes over one item of any type, with what it holds.
    pub fn skip(&mut self) -> Result<(), DagCborError> {
        self.skip_nested(0)
    }

    fn skip_nested(&mut self, depth: usize) -> Result<(), DagCborError> {
        if depth > MAX_NESTING {
            return Err(DagCborError("items nested too deep"));
        }
        let (major, argument) = self.head()?;
        let count =
            |n: u64| usize::try_from(n).map_err(|_| DagCborError("the bytes end inside an item"));
        match major {
            BYTES | TEXT => {
                self.take(count(argument)?)?;
            }
            ARRAY | MAP => {
                let items = if major == MAP { 2 } else { 1 };
                for _ in 0..argument.saturating_mul(items) {
                    self.skip_nested(depth + 1)?;
                }
            }
            TAG => self.skip_nested(depth + 1)?,
            _ => {}
        }
        Ok(())
    }
}

/// Writes an item's head: its major type and argument, in the fewest bytes.
pub fn write_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend([major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend((value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend(value.to_be_bytes());
        }
    }
}

/// Writes a text string.
pub fn write_text(out: &mut Vec<u8>, text: &str) {
    write_head(out, TEXT, text.len() as u64);
    out.extend(text.as_bytes());
}

/// Writes a link.
pub fn write_link(out: &mut Vec<u8>, cid: &Cid) {
    write_head(out, TAG, LINK_TAG);
    let bytes = cid.to_bytes();
    write_head(out, BYTES, bytes.len() as u64 + 1);
    out.push(0x00);
    out.extend(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every head reads back as written, in as many bytes as it took.
        #[test]
        fn heads_round_trip(major in 0u8..8, value in any::<u64>()) {
            let mut out = Vec::new();
            write_head(&mut out, major, value);
            let mut reader = Reader::new(&out);
            prop_assert_eq!(reader.head().unwrap(), (major, value));
            prop_assert!(reader.is_at_end());
        }

        /// Skipping arbitrary bytes ends, with an item or an error.
        #[test]
        fn skipping_arbitrary_bytes_ends(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Reader::new(&bytes).skip();
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let nested = vec![0x81; 10_000];
        assert_eq!(
            Reader::new(&nested).skip(),
            Err(DagCborError("items nested too deep"))
        );
    }
}
