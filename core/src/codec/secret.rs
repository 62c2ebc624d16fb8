//! The cluster secret: the 32-byte pre-shared key of the cluster's private network.
//!
//! Go ipfs-cluster stores it as 64 hexadecimal characters (`cluster.secret`); libp2p tools
//! store the same key in a `swarm.key` file (`/key/swarm/psk/1.0.0/` then `/base16/`,
//! `/base64/` or `/bin/`). Both forms are read here; the key never appears in `Debug` output.

use base64::Engine as _;
use rand_core::CryptoRngCore;
use std::fmt;

/// Length of the key in bytes.
pub const SECRET_LEN: usize = 32;

const KEY_FILE_HEADER: &[u8] = b"/key/swarm/psk/1.0.0/";

/// Why a cluster secret or swarm key could not be read. Messages name the problem and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the cluster secret is empty: set it to 64 hexadecimal characters (32 bytes), e.g. the output of `pinfold secret new`")]
    Empty,
    #[error("the cluster secret has an invalid character {character:?} at position {position}: it must be 64 hexadecimal characters (0-9, a-f)")]
    InvalidHex { character: char, position: usize },
    #[error("the cluster secret has an odd number of hexadecimal characters ({chars}): it must be exactly 64")]
    OddLength { chars: usize },
    #[error("the cluster secret is {bytes} bytes ({chars} hexadecimal characters): it must be 32 bytes (64 hexadecimal characters)")]
    WrongLength { bytes: usize, chars: usize },
    #[error("not a swarm key file: the first line must be `/key/swarm/psk/1.0.0/`")]
    NotAKeyFile,
    #[error(
        "swarm key file uses an unknown encoding {0:?}: expected `/base16/`, `/base64/` or `/bin/`"
    )]
    UnknownEncoding(String),
    #[error("swarm key file body is not valid {encoding}: {detail}")]
    BadKeyFileBody {
        encoding: &'static str,
        detail: String,
    },
}

/// A cluster secret (libp2p private-network pre-shared key).
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret([u8; SECRET_LEN]);

impl ClusterSecret {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// Draws a fresh secret from a cryptographic random number generator.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = [0u8; SECRET_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Parses the 64-hex-character form used by `cluster.secret` and `CLUSTER_SECRET`.
    /// Surrounding whitespace is ignored; upper and lower case are accepted.
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SecretError::Empty);
        }
        let bytes = decode_hex(text)?;
        Self::from_slice(&bytes, text.len())
    }

    /// Reads a libp2p `swarm.key` file (`/key/swarm/psk/1.0.0/`, then `/base16/`,
    /// `/base64/` or `/bin/`, then the key). CRLF line endings are tolerated.
    pub fn from_key_file(file: &[u8]) -> Result<Self, SecretError> {
        let (header, rest) = split_line(file).ok_or(SecretError::NotAKeyFile)?;
        if header != KEY_FILE_HEADER {
            return Err(SecretError::NotAKeyFile);
        }
        let (encoding, body) =
            split_line(rest).ok_or_else(|| SecretError::UnknownEncoding(String::new()))?;
        match encoding {
            b"/base16/" => {
                let text = std::str::from_utf8(body).map_err(|_| SecretError::BadKeyFileBody {
                    encoding: "base16",
                    detail: "not text".into(),
                })?;
                Self::from_hex(text)
            }
            b"/base64/" => {
                let text: Vec<u8> = body
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&text)
                    .map_err(|e| SecretError::BadKeyFileBody {
                        encoding: "base64",
                        detail: e.to_string(),
                    })?;
                Self::from_slice(&bytes, bytes.len() * 2)
            }
            b"/bin/" => {
                // The key is the next 32 bytes; only a line ending may follow them.
                if body.len() < SECRET_LEN {
                    return Err(SecretError::WrongLength {
                        bytes: body.len(),
                        chars: body.len() * 2,
                    });
                }
                let (key, trailer) = body.split_at(SECRET_LEN);
                if !matches!(trailer, b"" | b"\n" | b"\r\n") {
                    return Err(SecretError::BadKeyFileBody {
                        encoding: "bin",
                        detail: format!("{} bytes follow the 32-byte key", trailer.len()),
                    });
                }
                Self::from_slice(key, SECRET_LEN * 2)
            }
            other => Err(SecretError::UnknownEncoding(
                String::from_utf8_lossy(other).into_owned(),
            )),
        }
    }

    /// The 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// The 64 lowercase hexadecimal characters of `cluster.secret`.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The base16 `swarm.key` file form, as `ipfs-swarm-key-gen` writes it (plus a final newline).
    pub fn to_key_file(&self) -> String {
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", self.to_hex())
    }

    fn from_slice(bytes: &[u8], chars: usize) -> Result<Self, SecretError> {
        let key: [u8; SECRET_LEN] = bytes.try_into().map_err(|_| SecretError::WrongLength {
            bytes: bytes.len(),
            chars,
        })?;
        Ok(Self(key))
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, SecretError> {
    hex::decode(text).map_err(|e| match e {
        hex::FromHexError::InvalidHexCharacter { c, index } => SecretError::InvalidHex {
            character: c,
            position: index,
        },
        hex::FromHexError::OddLength | hex::FromHexError::InvalidStringLength => {
            SecretError::OddLength { chars: text.len() }
        }
    })
}

/// Splits off the first line, without its `\n` or `\r\n`.
fn split_line(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = input.iter().position(|&b| b == b'\n')?;
    let line = &input[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, &input[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The cases of ipfs-cluster's TestClusterSecretFormat (pnet_test.go).
    const GOOD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_the_go_test_secret() {
        let secret = ClusterSecret::from_hex(GOOD).unwrap();
        assert_eq!(secret.to_hex(), GOOD);
        assert_eq!(secret.as_bytes()[..4], [0x01, 0x23, 0x45, 0x67]);
    }

    #[test]
    fn rejects_what_go_rejects_with_a_message_naming_the_problem() {
        assert_eq!(ClusterSecret::from_hex(""), Err(SecretError::Empty));
        assert_eq!(
            ClusterSecret::from_hex("0123456789abcdef"),
            Err(SecretError::WrongLength {
                bytes: 8,
                chars: 16
            })
        );
        let too_long = format!("{GOOD}0");
        assert_eq!(
            ClusterSecret::from_hex(&too_long),
            Err(SecretError::OddLength { chars: 65 })
        );
        let bad = "0123456789abcdef0123456789!!!!!!0123456789abcdef0123456789abcdef";
        let err = ClusterSecret::from_hex(bad).unwrap_err();
        assert_eq!(
            err,
            SecretError::InvalidHex {
                character: '!',
                position: 26
            }
        );
        assert!(err.to_string().contains("position 26"));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let secret = ClusterSecret::from_hex(GOOD).unwrap();
        assert_eq!(format!("{secret:?}"), "ClusterSecret(<redacted>)");
    }

    // The cases of go-libp2p's core/pnet/codec_test.go.
    fn key_file(encoding: &str, windows: bool, body: &[u8]) -> Vec<u8> {
        let eol: &[u8] = if windows { b"\r\n" } else { b"\n" };
        let mut file = b"/key/swarm/psk/1.0.0/".to_vec();
        file.extend_from_slice(eol);
        file.extend_from_slice(encoding.as_bytes());
        file.extend_from_slice(eol);
        file.extend_from_slice(body);
        file
    }

    #[test]
    fn reads_every_key_file_encoding_with_either_line_ending() {
        let counting: [u8; 32] = std::array::from_fn(|i| i as u8);
        for windows in [false, true] {
            let hex_ff = key_file("/base16/", windows, "FF".repeat(32).as_bytes());
            assert_eq!(
                ClusterSecret::from_key_file(&hex_ff).unwrap().as_bytes(),
                &[0xff; 32]
            );

            let b64 = base64::engine::general_purpose::STANDARD.encode(counting);
            let file = key_file("/base64/", windows, b64.as_bytes());
            assert_eq!(
                ClusterSecret::from_key_file(&file).unwrap().as_bytes(),
                &counting
            );

            let file = key_file("/bin/", windows, &counting);
            assert_eq!(
                ClusterSecret::from_key_file(&file).unwrap().as_bytes(),
                &counting
            );

            let bad = key_file("/verybadbase/", windows, b"Have fun decoding that key");
            assert_eq!(
                ClusterSecret::from_key_file(&bad),
                Err(SecretError::UnknownEncoding("/verybadbase/".into()))
            );
        }
    }

    #[test]
    fn rejects_other_files() {
        assert_eq!(
            ClusterSecret::from_key_file(b""),
            Err(SecretError::NotAKeyFile)
        );
        assert_eq!(
            ClusterSecret::from_key_file(GOOD.as_bytes()),
            Err(SecretError::NotAKeyFile)
        );
        let short = key_file("/bin/", false, &[1; 31]);
        assert!(matches!(
            ClusterSecret::from_key_file(&short),
            Err(SecretError::WrongLength { bytes: 31, .. })
        ));
        let long = key_file("/bin/", false, &[1; 40]);
        assert!(matches!(
            ClusterSecret::from_key_file(&long),
            Err(SecretError::BadKeyFileBody {
                encoding: "bin",
                ..
            })
        ));
    }

    #[test]
    fn generated_secrets_differ() {
        let mut rng = rand::rngs::OsRng;
        assert_ne!(
            ClusterSecret::generate(&mut rng),
            ClusterSecret::generate(&mut rng)
        );
    }

    proptest! {
        #[test]
        fn hex_round_trip(bytes in any::<[u8; 32]>()) {
            let secret = ClusterSecret::from_bytes(bytes);
            prop_assert_eq!(ClusterSecret::from_hex(&secret.to_hex()).unwrap(), secret.clone());
            prop_assert_eq!(ClusterSecret::from_hex(&secret.to_hex().to_uppercase()).unwrap(), secret);
        }

        #[test]
        fn key_file_round_trip(bytes in any::<[u8; 32]>()) {
            let secret = ClusterSecret::from_bytes(bytes);
            prop_assert_eq!(ClusterSecret::from_key_file(secret.to_key_file().as_bytes()).unwrap(), secret);
        }

        #[test]
        fn key_file_reader_never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ClusterSecret::from_key_file(&input);
        }
    }
}
