//! CAR files: the roots one names, read from its header (CARv1, or the CARv1 inside a
//! CARv2: an unsigned LEB128 length, then a dag-cbor map `{"roots": [CID...], "version":
//! 1}`), and the blocks of a CARv1 stream as its bytes arrive (each section a LEB128
//! length, then the block's CID and its data).

use cid::Cid;
use pinfold_core::codec::dag_cbor::{DagCborError, Reader, ARRAY, MAP, UNSIGNED};

/// Why a CAR header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a CAR file: {0}")]
pub struct NotCar(String);

fn not_car(what: impl Into<String>) -> NotCar {
    NotCar(what.into())
}

impl From<DagCborError> for NotCar {
    fn from(error: DagCborError) -> Self {
        not_car(format!("its header: {error}"))
    }
}

/// CARv2's pragma: the CARv1 header `{"version": 2}` with no roots.
const CARV2_PRAGMA: &[u8] = &[
    0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02,
];

/// The roots named by the CAR file that starts with `bytes` (its first kilobytes are
/// enough: the header comes first).
pub fn roots(bytes: &[u8]) -> Result<Vec<Cid>, NotCar> {
    if let Some(rest) = bytes.strip_prefix(CARV2_PRAGMA) {
        // 16 bytes of characteristics, then the data offset (u64, little endian).
        let offset = rest
            .get(16..24)
            .ok_or_else(|| not_car("the CARv2 header is cut short"))?;
        let offset = u64::from_le_bytes(offset.try_into().expect("8 bytes"));
        let inner = usize::try_from(offset)
            .ok()
            .and_then(|o| bytes.get(o..))
            .ok_or_else(|| {
                not_car(format!(
                    "the CARv2 data starts at byte {offset}, past what was read"
                ))
            })?;
        return v1_roots(inner);
    }
    v1_roots(bytes)
}

fn v1_roots(bytes: &[u8]) -> Result<Vec<Cid>, NotCar> {
    let (length, used) =
        section_length(bytes)?.ok_or_else(|| not_car("the header length is cut short"))?;
    let header = usize::try_from(length)
        .ok()
        .and_then(|n| bytes.get(used..used.checked_add(n)?))
        .ok_or_else(|| {
            not_car(format!(
                "a header of {length} bytes is longer than the file"
            ))
        })?;
    let mut reader = Reader::new(header);
    let entries = reader.expect(MAP, "the header is not a map")?;
    let (mut roots, mut version) = (None, None);
    for _ in 0..entries {
        match reader.text("a key of the header is not text")? {
            "roots" => {
                let count = reader.expect(ARRAY, "roots is not a list")?;
                let mut cids = Vec::new();
                for _ in 0..count {
                    cids.push(reader.link("a root is not a CID")?);
                }
                roots = Some(cids);
            }
            "version" => version = Some(reader.expect(UNSIGNED, "version is not a number")?),
            _ => reader.skip()?,
        }
    }
    match version {
        Some(1) => roots.ok_or_else(|| not_car("the header names no roots")),
        Some(other) => Err(not_car(format!("version {other} is not 1"))),
        None => Err(not_car("the header has no version")),
    }
}

/// The blocks of a CARv1 stream, taken as its bytes arrive: [`Self::push`] the bytes,
/// then take each whole block with [`Self::next_block`].
pub struct CarBlocks {
    buffer: Vec<u8>,
    header_read: bool,
    max_section: usize,
}

impl CarBlocks {
    /// A reader that refuses a header or section longer than `max_section` bytes.
    pub fn new(max_section: usize) -> Self {
        Self {
            buffer: Vec::new(),
            header_read: false,
            max_section,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole block, or `None` until more bytes are pushed.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, NotCar> {
        loop {
            let Some((length, prefix)) = section_length(&self.buffer)? else {
                return Ok(None);
            };
            let length = usize::try_from(length)
                .ok()
                .filter(|n| *n <= self.max_section)
                .ok_or_else(|| {
                    not_car(format!(
                        "a section of {length} bytes is longer than the {} allowed",
                        self.max_section
                    ))
                })?;
            let end = prefix + length;
            if self.buffer.len() < end {
                return Ok(None);
            }
            let rest = self.buffer.split_off(end);
            let section = std::mem::replace(&mut self.buffer, rest);
            if !self.header_read {
                self.header_read = true;
                continue;
            }
            let mut reader = std::io::Cursor::new(&section[prefix..]);
            let cid =
                Cid::read_bytes(&mut reader).map_err(|e| not_car(format!("a block's CID: {e}")))?;
            let data = section[prefix + reader.position() as usize..].to_vec();
            return Ok(Some((cid, data)));
        }
    }

    /// Checks that the stream ended between sections, after its header.
    pub fn finish(&self) -> Result<(), NotCar> {
        match (self.header_read, self.buffer.is_empty()) {
            (true, true) => Ok(()),
            (false, _) => Err(not_car("the stream ended before its header")),
            (true, false) => Err(not_car("the stream ended inside a block")),
        }
    }
}

/// The length a section starts with and the bytes it took, or `None` when the bytes
/// stop inside it.
fn section_length(bytes: &[u8]) -> Result<Option<(u64, usize)>, NotCar> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 10 {
        return Err(not_car("a section length is not a varint"));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cid(n: u8) -> Cid {
        let digest = pinfold_core::codec::dagpb::sha2_256_multihash(&[n]);
        Cid::new_v1(0x55, digest)
    }

    /// A CARv1 header as go-car writes it, with `extra` entries before the version.
    fn header(roots: &[Cid], extra: &[u8], entries: u8) -> Vec<u8> {
        let mut cbor = vec![0xa0 + entries, 0x65];
        cbor.extend_from_slice(b"roots");
        cbor.push(0x80 + roots.len() as u8);
        for root in roots {
            let bytes = root.to_bytes();
            cbor.extend_from_slice(&[0xd8, 0x2a, 0x58, bytes.len() as u8 + 1, 0x00]);
            cbor.extend_from_slice(&bytes);
        }
        cbor.extend_from_slice(extra);
        cbor.push(0x67);
        cbor.extend_from_slice(b"version");
        cbor.push(0x01);
        let mut car = vec![cbor.len() as u8];
        car.extend(cbor);
        car.extend_from_slice(b"blocks follow");
        car
    }

    #[test]
    fn reads_the_roots_of_a_carv1_header() {
        assert_eq!(roots(&header(&[cid(1)], &[], 2)), Ok(vec![cid(1)]));
        assert_eq!(
            roots(&header(&[cid(1), cid(2)], &[], 2)),
            Ok(vec![cid(1), cid(2)])
        );
        assert_eq!(roots(&header(&[], &[], 2)), Ok(vec![]));
        // Unknown keys are skipped, whatever they hold.
        let extra = [
            0x64, b'n', b'o', b't', b'e', 0x82, 0x01, 0xa1, 0x61, b'k', 0x41, 0xff,
        ];
        assert_eq!(roots(&header(&[cid(3)], &extra, 3)), Ok(vec![cid(3)]));
    }

    #[test]
    fn reads_the_roots_inside_a_carv2() {
        let inner = header(&[cid(4)], &[], 2);
        let mut car = CARV2_PRAGMA.to_vec();
        car.extend_from_slice(&[0; 16]);
        let offset = (CARV2_PRAGMA.len() + 40) as u64;
        car.extend_from_slice(&offset.to_le_bytes());
        car.extend_from_slice(&(inner.len() as u64).to_le_bytes());
        car.extend_from_slice(&0u64.to_le_bytes());
        car.extend(inner);
        assert_eq!(roots(&car), Ok(vec![cid(4)]));
    }

    #[test]
    fn what_is_not_a_car_header_is_refused_with_the_reason() {
        let mut wrong_version = header(&[cid(1)], &[], 2);
        let at = wrong_version.len() - b"blocks follow".len() - 1;
        wrong_version[at] = 0x02;
        assert_eq!(
            roots(&wrong_version).unwrap_err().to_string(),
            "not a CAR file: version 2 is not 1"
        );
        assert!(roots(b"hello world").is_err());
        assert!(roots(&[]).is_err());
        let full = header(&[cid(1)], &[], 2);
        assert!(roots(&full[..20])
            .unwrap_err()
            .to_string()
            .contains("longer than the file"));
    }

    /// A CARv1 file: the header naming `blocks[0]`, then each block as a section.
    fn car_file(blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
        let mut car = header(&blocks[..1].iter().map(|b| b.0).collect::<Vec<_>>(), &[], 2);
        car.truncate(car.len() - b"blocks follow".len());
        for (cid, data) in blocks {
            let mut section = cid.to_bytes();
            section.extend_from_slice(data);
            let mut length = section.len();
            while length >= 0x80 {
                car.push((length as u8) | 0x80);
                length >>= 7;
            }
            car.push(length as u8);
            car.extend(section);
        }
        car
    }

    fn take_all(reader: &mut CarBlocks) -> Result<Vec<(Cid, Vec<u8>)>, NotCar> {
        let mut blocks = Vec::new();
        while let Some(block) = reader.next_block()? {
            blocks.push(block);
        }
        Ok(blocks)
    }

    #[test]
    fn a_car_streams_its_blocks_however_its_bytes_are_cut() {
        let blocks: Vec<(Cid, Vec<u8>)> = (0..3)
            .map(|n| (cid(n), vec![n; 100 + 200 * n as usize]))
            .collect();
        let car = car_file(&blocks);
        for chunk in [1, 7, 64, car.len()] {
            let mut reader = CarBlocks::new(1024);
            let mut got = Vec::new();
            for piece in car.chunks(chunk) {
                reader.push(piece);
                got.extend(take_all(&mut reader).unwrap());
            }
            reader.finish().unwrap();
            assert_eq!(got, blocks, "chunks of {chunk} bytes");
        }
        let mut cut = CarBlocks::new(1024);
        cut.push(&car[..car.len() - 1]);
        take_all(&mut cut).unwrap();
        assert!(cut
            .finish()
            .unwrap_err()
            .to_string()
            .contains("inside a block"));
        let mut small = CarBlocks::new(300);
        small.push(&car);
        assert!(take_all(&mut small)
            .unwrap_err()
            .to_string()
            .contains("longer than the 300 allowed"));
    }

    proptest! {
        #[test]
        fn any_bytes_give_blocks_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut reader = CarBlocks::new(256);
            reader.push(&bytes);
            let _ = take_all(&mut reader);
        }

        #[test]
        fn any_bytes_give_roots_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = roots(&bytes);
        }

        #[test]
        fn any_cut_of_a_header_gives_roots_or_an_error(cut in 0usize..90) {
            let full = header(&[cid(1), cid(2)], &[], 2);
            let _ = roots(&full[..cut.min(full.len())]);
        }
    }
}
