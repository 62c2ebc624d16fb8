//! MessagePack as Go ipfs-cluster speaks it: ugorji's `MsgpackHandle` with its default
//! settings, used for pubsub metrics and go-libp2p-gorpc frames.
//!
//! [`Value`] is a decoded tree. [`encode`] writes the bytes ugorji writes: strings and
//! byte slices alike in the legacy raw family (fixstr below 32 bytes, else str16 or
//! str32; never str8 or bin), signed integers in the smallest *signed* form above 127,
//! unsigned ones in the smallest unsigned form. [`decode`] reads any msgpack (str8 and bin
//! as raw bytes, ext kept), bounded by [`Limits`]; [`complete_len`] says whether a buffer
//! holds a whole value yet, without allocating, for streams that carry values
//! back-to-back with no length prefix.

/// A msgpack value. Strings and binary are both [`Value::Raw`]: Go sends peer ids, CIDs
/// and multiaddrs as raw bytes that are not UTF-8.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    /// A signed integer (Go's `int` family): positive fixints and signed markers decode here.
    Int(i64),
    /// An unsigned integer marker (Go's `uint` family).
    Uint(u64),
    F32(f32),
    F64(f64),
    Raw(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Ext(i8, Vec<u8>),
}

/// Bounds on what [`decode`] and [`complete_len`] accept from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Whole encoded value, in bytes.
    pub max_bytes: usize,
    /// Nesting of arrays and maps.
    pub max_depth: usize,
}

impl Limits {
    /// An RPC argument a peer sends: at most a block of [`super::MAX_BLOCK_BYTES`] with
    /// its CID and size (`IPFSConnector.BlockStream`).
    pub const RPC_ARGUMENT: Limits = Limits {
        max_bytes: super::MAX_BLOCK_BYTES + 4096,
        max_depth: 16,
    };

    /// An RPC reply a trusted peer sends, such as a garbage collection listing every
    /// block it removed (Go caps none).
    pub const RPC_REPLY: Limits = Limits {
        max_bytes: 16 * 1024 * 1024,
        max_depth: 16,
    };
}

/// Why bytes are not a msgpack value within the limits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    #[error("msgpack value of more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("msgpack nested deeper than {limit}")]
    TooDeep { limit: usize },
    #[error("msgpack byte 0x{marker:02x} at {offset} is no value")]
    BadMarker { marker: u8, offset: usize },
    #[error("msgpack value cut short")]
    Truncated,
}

impl Value {
    /// A raw value holding `text`.
    pub fn str(text: &str) -> Value {
        Value::Raw(text.as_bytes().to_vec())
    }

    /// The value under the raw key `key` of a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Raw(bytes) if bytes == key.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// An integer of either family, when it fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(n) => Some(n),
            Value::Uint(n) => i64::try_from(n).ok(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Int(n) => u64::try_from(n).ok(),
            Value::Uint(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Raw(bytes) => Some(bytes),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }
}

/// Appends `value` as ugorji writes it.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Nil => out.push(0xc0),
        Value::Bool(false) => out.push(0xc2),
        Value::Bool(true) => out.push(0xc3),
        Value::Int(n) => encode_int(*n, out),
        Value::Uint(n) => encode_uint(*n, out),
        Value::F32(f) => {
            out.push(0xca);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::F64(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Raw(bytes) => {
            container_len(out, 0xa0, 32, 0xda, bytes.len());
            out.extend_from_slice(bytes);
        }
        Value::Array(items) => {
            container_len(out, 0x90, 16, 0xdc, items.len());
            for item in items {
                encode(item, out);
            }
        }
        Value::Map(entries) => {
            container_len(out, 0x80, 16, 0xde, entries.len());
            for (key, value) in entries {
                encode(key, out);
                encode(value, out);
            }
        }
        Value::Ext(tag, data) => {
            let len = data.len();
            match len {
                1 => out.push(0xd4),
                2 => out.push(0xd5),
                4 => out.push(0xd6),
                8 => out.push(0xd7),
                16 => out.push(0xd8),
                _ if len < 256 => out.extend_from_slice(&[0xc7, len as u8]),
                _ if len < 65536 => {
                    out.push(0xc8);
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                }
                _ => {
                    out.push(0xc9);
                    out.extend_from_slice(&(len as u32).to_be_bytes());
                }
            }
            out.push(*tag as u8);
            out.extend_from_slice(data);
        }
    }
}

/// `value`'s bytes.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(value, &mut out);
    out
}

/// A fixed form below `fix_cutoff` items, else the 16-bit form (`b16`) or the 32-bit one
/// after it: ugorji's `writeContainerLen` for the legacy raw family, arrays and maps.
fn container_len(out: &mut Vec<u8>, fix: u8, fix_cutoff: usize, b16: u8, len: usize) {
    if len < fix_cutoff {
        out.push(fix | len as u8);
    } else if len < 65536 {
        out.push(b16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(b16 + 1);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// ugorji's `EncodeInt`: a fixint for -32..=127, else the smallest *signed* form that
/// holds it (int8 only below -32).
fn encode_int(n: i64, out: &mut Vec<u8>) {
    if (-32..=127).contains(&n) {
        out.push(n as u8);
    } else if (i64::from(i8::MIN)..0).contains(&n) {
        out.extend_from_slice(&[0xd0, n as u8]);
    } else if let Ok(n) = i16::try_from(n) {
        out.push(0xd1);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = i32::try_from(n) {
        out.push(0xd2);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_uint(n: u64, out: &mut Vec<u8>) {
    if n <= i8::MAX as u64 {
        out.push(n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.extend_from_slice(&[0xcc, n as u8]);
    } else if n <= u64::from(u16::MAX) {
        out.push(0xcd);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(0xce);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The length of the first value in `bytes` once it is all there, `None` while more bytes
/// are needed; an error as soon as the bytes cannot start a value within `limits`.
pub fn complete_len(bytes: &[u8], limits: Limits) -> Result<Option<usize>, MsgpackError> {
    let mut reader = Reader {
        bytes,
        at: 0,
        limits,
    };
    match reader.skip(0) {
        Ok(()) => Ok(Some(reader.at)),
        Err(MsgpackError::Truncated) if bytes.len() <= limits.max_bytes => Ok(None),
        Err(MsgpackError::Truncated) => Err(MsgpackError::TooLarge {
            limit: limits.max_bytes,
        }),
        Err(error) => Err(error),
    }
}

/// The first value in `bytes` and how many bytes it took.
pub fn decode(bytes: &[u8], limits: Limits) -> Result<(Value, usize), MsgpackError> {
    let mut reader = Reader {
        bytes,
        at: 0,
        limits,
    };
    let value = reader.value(0)?;
    Ok((value, reader.at))
}

/// What a marker byte starts: how long its header is and what follows it.
enum Shape {
    /// A scalar of this many bytes after the marker.
    Fixed(usize),
    /// A raw or ext payload: the length is in `len_bytes` after the marker (0: in the
    /// marker itself, as `fixed`), followed by a type byte when `ext`.
    Payload {
        len_bytes: usize,
        fixed: usize,
        ext: bool,
    },
    Array {
        len_bytes: usize,
        fixed: usize,
    },
    Map {
        len_bytes: usize,
        fixed: usize,
    },
}

fn shape(marker: u8) -> Option<Shape> {
    Some(match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Shape::Fixed(0),
        0x80..=0x8f => Shape::Map {
            len_bytes: 0,
            fixed: usize::from(marker & 0x0f),
        },
        0x90..=0x9f => Shape::Array {
            len_bytes: 0,
            fixed: usize::from(marker & 0x0f),
        },
        0xa0..=0xbf => Shape::Payload {
            len_bytes: 0,
            fixed: usize::from(marker & 0x1f),
            ext: false,
        },
        0xc4 | 0xd9 => payload(1, false),
        0xc5 | 0xda => payload(2, false),
        0xc6 | 0xdb => payload(4, false),
        0xc7 => payload(1, true),
        0xc8 => payload(2, true),
        0xc9 => payload(4, true),
        0xca => Shape::Fixed(4),
        0xcb => Shape::Fixed(8),
        0xcc | 0xd0 => Shape::Fixed(1),
        0xcd | 0xd1 => Shape::Fixed(2),
        0xce | 0xd2 => Shape::Fixed(4),
        0xcf | 0xd3 => Shape::Fixed(8),
        0xd4 => fixext(1),
        0xd5 => fixext(2),
        0xd6 => fixext(4),
        0xd7 => fixext(8),
        0xd8 => fixext(16),
        0xdc => Shape::Array {
            len_bytes: 2,
            fixed: 0,
        },
        0xdd => Shape::Array {
            len_bytes: 4,
            fixed: 0,
        },
        0xde => Shape::Map {
            len_bytes: 2,
            fixed: 0,
        },
        0xdf => Shape::Map {
            len_bytes: 4,
            fixed: 0,
        },
        0xc1 => return None,
    })
}

fn payload(len_bytes: usize, ext: bool) -> Shape {
    Shape::Payload {
        len_bytes,
        fixed: 0,
        ext,
    }
}

fn fixext(len: usize) -> Shape {
    Shape::Payload {
        len_bytes: 0,
        fixed: len,
        ext: true,
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    limits: Limits,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        let end = self.at.checked_add(n).ok_or(MsgpackError::TooLarge {
            limit: self.limits.max_bytes,
        })?;
        if end > self.limits.max_bytes {
            return Err(MsgpackError::TooLarge {
                limit: self.limits.max_bytes,
            });
        }
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(MsgpackError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn be(&mut self, n: usize) -> Result<u64, MsgpackError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn length(&mut self, len_bytes: usize, fixed: usize) -> Result<usize, MsgpackError> {
        if len_bytes == 0 {
            return Ok(fixed);
        }
        usize::try_from(self.be(len_bytes)?).map_err(|_| MsgpackError::TooLarge {
            limit: self.limits.max_bytes,
        })
    }

    /// The marker and its shape, checking the nesting depth.
    fn head(&mut self, depth: usize) -> Result<(u8, Shape), MsgpackError> {
        if depth > self.limits.max_depth {
            return Err(MsgpackError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        let offset = self.at;
        let marker = self.take(1)?[0];
        let shape = shape(marker).ok_or(MsgpackError::BadMarker { marker, offset })?;
        Ok((marker, shape))
    }

    /// Every container item takes at least one byte, so more items than the limit's
    /// bytes can never fit.
    fn bounded_count(&self, count: usize) -> Result<usize, MsgpackError> {
        if count > self.limits.max_bytes {
            return Err(MsgpackError::TooLarge {
                limit: self.limits.max_bytes,
            });
        }
        Ok(count)
    }

    /// A count of items to allocate for: more than the bytes left is cut short, found
    /// before allocating.
    fn allocatable_count(&self, count: usize) -> Result<usize, MsgpackError> {
        self.bounded_count(count)?;
        if count > self.bytes.len().saturating_sub(self.at) {
            return Err(MsgpackError::Truncated);
        }
        Ok(count)
    }

    fn skip(&mut self, depth: usize) -> Result<(), MsgpackError> {
        let (_, shape) = self.head(depth)?;
        match shape {
            Shape::Fixed(n) => {
                self.take(n)?;
            }
            Shape::Payload {
                len_bytes,
                fixed,
                ext,
            } => {
                let len = self.length(len_bytes, fixed)?;
                self.take(len + usize::from(ext))?;
            }
            Shape::Array { len_bytes, fixed } => {
                let count = self.length(len_bytes, fixed)?;
                for _ in 0..self.bounded_count(count)? {
                    self.skip(depth + 1)?;
                }
            }
            Shape::Map { len_bytes, fixed } => {
                let count = self.length(len_bytes, fixed)?;
                for _ in 0..self.bounded_count(count.saturating_mul(2))? {
                    self.skip(depth + 1)?;
                }
            }
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, MsgpackError> {
        let (marker, shape) = self.head(depth)?;
        Ok(match shape {
            Shape::Fixed(n) => {
                let raw = self.be(n)?;
                match marker {
                    0x00..=0x7f => Value::Int(i64::from(marker)),
                    0xe0..=0xff => Value::Int(i64::from(marker as i8)),
                    0xc0 => Value::Nil,
                    0xc2 => Value::Bool(false),
                    0xc3 => Value::Bool(true),
                    0xca => Value::F32(f32::from_bits(raw as u32)),
                    0xcb => Value::F64(f64::from_bits(raw)),
                    0xcc..=0xcf => Value::Uint(raw),
                    0xd0 => Value::Int(i64::from(raw as u8 as i8)),
                    0xd1 => Value::Int(i64::from(raw as u16 as i16)),
                    0xd2 => Value::Int(i64::from(raw as u32 as i32)),
                    _ => Value::Int(raw as i64),
                }
            }
            Shape::Payload {
                len_bytes,
                fixed,
                ext,
            } => {
                let len = self.length(len_bytes, fixed)?;
                if ext {
                    let tag = self.take(1)?[0] as i8;
                    Value::Ext(tag, self.take(len)?.to_vec())
                } else {
                    Value::Raw(self.take(len)?.to_vec())
                }
            }
            Shape::Array { len_bytes, fixed } => {
                let count = self.length(len_bytes, fixed)?;
                self.allocatable_count(count)?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            Shape::Map { len_bytes, fixed } => {
                let count = self.length(len_bytes, fixed)?;
                self.allocatable_count(count.saturating_mul(2))?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = self.value(depth + 1)?;
                    entries.push((key, self.value(depth + 1)?));
                }
                Value::Map(entries)
            }
        })
    }
}

/// A msgpack map of a Go struct: fields in declaration order, `omitempty` ones left out
/// when empty, as ugorji writes them.
#[derive(Default)]
pub struct StructWriter {
    entries: Vec<(Value, Value)>,
}

impl StructWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A field that is always written.
    pub fn field(mut self, key: &str, value: Value) -> Self {
        self.entries.push((Value::str(key), value));
        self
    }

    /// An `omitempty` field: left out when nil, false, zero, or an empty raw value
    /// (ugorji also leaves out nil slices and maps; callers pass `Nil` for those).
    pub fn omit_empty(self, key: &str, value: Value) -> Self {
        let empty = match &value {
            Value::Nil | Value::Bool(false) | Value::Int(0) | Value::Uint(0) => true,
            Value::Raw(bytes) => bytes.is_empty(),
            _ => false,
        };
        if empty {
            self
        } else {
            self.field(key, value)
        }
    }

    pub fn build(self) -> Value {
        Value::Map(self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1 << 20,
        max_depth: 8,
    };

    /// ugorji's forms for numbers, read off its `EncodeInt`/`EncodeUint`.
    #[test]
    fn numbers_take_ugorjis_forms() {
        let cases: [(Value, &[u8]); 10] = [
            (Value::Int(0), &[0x00]),
            (Value::Int(127), &[0x7f]),
            (Value::Int(128), &[0xd1, 0x00, 0x80]),
            (Value::Int(-1), &[0xff]),
            (Value::Int(-33), &[0xd0, 0xdf]),
            (Value::Int(40_000), &[0xd2, 0x00, 0x00, 0x9c, 0x40]),
            (Value::Uint(128), &[0xcc, 0x80]),
            (Value::Uint(256), &[0xcd, 0x01, 0x00]),
            (Value::Uint(1 << 32), &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
            (Value::Int(-40_000), &[0xd2, 0xff, 0xff, 0x63, 0xc0]),
        ];
        for (value, bytes) in cases {
            assert_eq!(to_vec(&value), bytes, "{value:?}");
        }
    }

    #[test]
    fn raw_bytes_never_take_str8_or_bin() {
        assert_eq!(to_vec(&Value::Raw(vec![7; 31]))[0], 0xbf);
        assert_eq!(&to_vec(&Value::Raw(vec![7; 32]))[..3], &[0xda, 0x00, 0x20]);
        assert_eq!(
            &to_vec(&Value::Raw(vec![7; 70_000]))[..5],
            &[0xdb, 0x00, 0x01, 0x11, 0x70]
        );
        // Read back from the other encoders' forms.
        assert_eq!(
            decode(&[0xd9, 2, b'h', b'i'], LIMITS).unwrap().0,
            Value::str("hi")
        );
        assert_eq!(
            decode(&[0xc4, 1, 0xff], LIMITS).unwrap().0,
            Value::Raw(vec![0xff])
        );
    }

    #[test]
    fn incomplete_values_wait_and_bad_ones_fail() {
        let bytes = to_vec(&Value::Map(vec![(
            Value::str("Name"),
            Value::str("Cluster"),
        )]));
        for cut in 0..bytes.len() {
            assert_eq!(complete_len(&bytes[..cut], LIMITS), Ok(None), "{cut}");
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(complete_len(&two, LIMITS), Ok(Some(bytes.len())));
        assert!(matches!(
            complete_len(&[0xc1], LIMITS),
            Err(MsgpackError::BadMarker { marker: 0xc1, .. })
        ));
        let deep = vec![0x91; 20];
        assert_eq!(
            complete_len(&deep, LIMITS),
            Err(MsgpackError::TooDeep { limit: 8 })
        );
        let small = Limits {
            max_bytes: 16,
            max_depth: 8,
        };
        assert_eq!(
            complete_len(&[0xdb, 0, 1, 0, 0], small),
            Err(MsgpackError::TooLarge { limit: 16 })
        );
        // A huge count with few bytes behind it allocates nothing.
        assert_eq!(
            decode(&[0xdd, 0xff, 0xff, 0xff, 0xff], LIMITS),
            Err(MsgpackError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(
            complete_len(&[0xdd, 0xff, 0xff, 0xff, 0xff], LIMITS),
            Err(MsgpackError::TooLarge { limit: 1 << 20 })
        );
        assert_eq!(
            decode(&[0xdc, 0x10, 0x00, 0xc0], LIMITS),
            Err(MsgpackError::Truncated)
        );
    }

    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            // Unsigned markers decode as Uint only above the positive fixint range.
            (128u64..).prop_map(Value::Uint),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Value::F64),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Raw),
            (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(t, d)| Value::Ext(t, d)),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner), 0..20).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn values_round_trip(value in values()) {
            let bytes = to_vec(&value);
            prop_assert_eq!(complete_len(&bytes, LIMITS), Ok(Some(bytes.len())));
            prop_assert_eq!(decode(&bytes, LIMITS), Ok((value, bytes.len())));
        }

        /// `complete_len` finds a whole value exactly where `decode` reads one; bytes
        /// `decode` fails on are never said to be whole (a value cut short may be found
        /// too large first, as an item of it cannot fit the limit).
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let len = complete_len(&bytes, LIMITS);
            match decode(&bytes, LIMITS) {
                Ok((_, used)) => prop_assert_eq!(len, Ok(Some(used))),
                Err(MsgpackError::Truncated) => prop_assert!(!matches!(len, Ok(Some(_)))),
                Err(error) => prop_assert_eq!(len, Err(error)),
            }
        }
    }
}
