//! Length-prefixed frames: an unsigned varint byte count, then the bytes, as go-libp2p's
//! `msgio` varint reader and writer frame protobuf messages on a stream (bitswap among them).

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: u64, max: usize },
    #[error("frame length prefix is not a valid varint")]
    BadLength,
    #[error("stream ended inside a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Bytes reserved for a frame's body before any of it arrives.
const INITIAL_BODY_CAPACITY: usize = 64 * 1024;

/// Reads one frame of at most `max` bytes; `Ok(None)` when the stream ends cleanly between
/// frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len: u64 = 0;
    for index in 0..10 {
        let mut byte = [0u8; 1];
        if reader.read(&mut byte).await? == 0 {
            return if index == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        let bits = u64::from(byte[0] & 0x7f);
        if index == 9 && byte[0] > 1 {
            return Err(FrameError::BadLength);
        }
        len |= bits << (7 * index);
        if byte[0] & 0x80 == 0 {
            if len > max as u64 {
                return Err(FrameError::TooLarge { len, max });
            }
            // Grown as bytes arrive, so that a peer announcing large frames on many
            // streams costs what it actually sends, not what it announces.
            let mut body = Vec::with_capacity((len as usize).min(INITIAL_BODY_CAPACITY));
            let read = reader.take(len).read_to_end(&mut body).await?;
            if (read as u64) < len {
                return Err(FrameError::Truncated);
            }
            return Ok(Some(body));
        }
    }
    Err(FrameError::BadLength)
}

/// Reads one frame of at most `max` bytes as a request-response codec needs it: a clean
/// end of stream is `UnexpectedEof`, a bad frame `InvalidData`.
pub async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    match read_frame(reader, max).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(std::io::ErrorKind::UnexpectedEof.into()),
        Err(FrameError::Io(error)) => Err(error),
        Err(error) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            error.to_string(),
        )),
    }
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    let mut prefix = Vec::with_capacity(10 + body.len());
    prost::encoding::encode_varint(body.len() as u64, &mut prefix);
    prefix.extend_from_slice(body);
    writer.write_all(&prefix).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut wire = Cursor::new(Vec::new());
            for body in &bodies {
                block_on(write_frame(&mut wire, body)).unwrap();
            }
            let mut reader = Cursor::new(wire.into_inner());
            for body in &bodies {
                let frame = block_on(read_frame(&mut reader, 300)).unwrap();
                prop_assert_eq!(frame.as_ref(), Some(body));
            }
            prop_assert!(block_on(read_frame(&mut reader, 300)).unwrap().is_none());
        }

        #[test]
        fn any_prefix_of_a_frame_is_truncated(body in proptest::collection::vec(any::<u8>(), 1..300), cut in 1usize..300) {
            let mut wire = Cursor::new(Vec::new());
            block_on(write_frame(&mut wire, &body)).unwrap();
            let mut bytes = wire.into_inner();
            bytes.truncate(cut.min(bytes.len() - 1));
            let result = block_on(read_frame(&mut Cursor::new(bytes), 300));
            prop_assert!(matches!(result, Err(FrameError::Truncated)), "{:?}", result);
        }
    }

    #[test]
    fn refuses_oversized_frames_before_reading_them() {
        let mut wire = Vec::new();
        prost::encoding::encode_varint(5_000_000, &mut wire);
        let result = block_on(read_frame(&mut Cursor::new(wire), 4 << 20));
        assert!(matches!(
            result,
            Err(FrameError::TooLarge { len: 5_000_000, .. })
        ));
    }

    #[test]
    fn refuses_overlong_varints() {
        let wire = vec![0xff; 11];
        let result = block_on(read_frame(&mut Cursor::new(wire), 100));
        assert!(matches!(result, Err(FrameError::BadLength)));
    }
}
