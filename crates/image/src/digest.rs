//! Content digests (`sha256:<64 lowercase hex>`) and the hashing readers/writers that
//! compute them while data streams through.
//!
//! Only sha256 is accepted: it is what every OCI and Docker registry uses for blobs,
//! manifests and diffIDs. Other algorithms are refused with a clear error rather than
//! silently treated as opaque strings, because every digest here is verified.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected \"sha256:<64 hex digits>\"")]
    Format(String),
    #[error("unsupported digest algorithm {0:?}: only sha256 is supported")]
    Algorithm(String),
    #[error("invalid digest {0:?}: the hex part must be 64 lowercase hex digits")]
    Hex(String),
}

/// A verified-format sha256 digest. The hex part is always 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Format(s.to_string()))?;
        if alg.is_empty() || hex.is_empty() {
            return Err(DigestError::Format(s.to_string()));
        }
        if alg != "sha256" {
            return Err(DigestError::Algorithm(alg.to_string()));
        }
        Digest::from_hex(hex).map_err(|_| DigestError::Hex(s.to_string()))
    }

    /// Builds a digest from its 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Digest {
                hex: hex.to_string(),
            })
        } else {
            Err(DigestError::Hex(hex.to_string()))
        }
    }

    /// The sha256 digest of `data`.
    pub fn of_bytes(data: &[u8]) -> Digest {
        let mut h = Hasher::new();
        h.update(data);
        h.finish()
    }

    /// Always `"sha256"`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        Digest::parse(s)
    }
}

/// Serialised as its `sha256:<hex>` string (image metadata).
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 that also counts bytes.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        let out = self.inner.finalize();
        let mut hex = String::with_capacity(64);
        for b in out {
            hex.push_str(&format!("{b:02x}"));
        }
        Digest { hex }
    }
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// The digest of everything read so far, and the inner reader.
    pub fn finish(self) -> (Digest, R) {
        (self.hasher.finish(), self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A writer that hashes everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self::with_hasher(inner, Hasher::new())
    }

    /// Continues from a hasher that already covers earlier bytes (a resumed write).
    pub fn with_hasher(inner: W, hasher: Hasher) -> Self {
        HashingWriter { inner, hasher }
    }

    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    pub fn finish(self) -> (Digest, u64, W) {
        let len = self.hasher.len();
        (self.hasher.finish(), len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_vectors() {
        assert_eq!(Digest::of_bytes(b"").hex(), EMPTY);
        assert_eq!(
            Digest::of_bytes(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_and_reject() {
        let d: Digest = format!("sha256:{EMPTY}").parse().unwrap();
        assert_eq!(d.hex(), EMPTY);
        assert_eq!(d.algorithm(), "sha256");
        assert!(matches!(
            Digest::parse(&format!("sha512:{EMPTY}")),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(
            Digest::parse(&format!("sha256:{}", EMPTY.to_uppercase())),
            Err(DigestError::Hex(_))
        ));
        assert!(matches!(
            Digest::parse("sha256:abc"),
            Err(DigestError::Hex(_))
        ));
        assert!(matches!(Digest::parse(EMPTY), Err(DigestError::Format(_))));
    }

    #[test]
    fn hashing_reader_and_writer_agree() {
        let data = vec![7u8; 100_000];
        let mut r = HashingReader::new(&data[..]);
        let mut out = Vec::new();
        let mut w = HashingWriter::new(&mut out);
        io::copy(&mut r, &mut w).unwrap();
        let (dr, _) = r.finish();
        let (dw, n, _) = w.finish();
        assert_eq!(dr, dw);
        assert_eq!(n, 100_000);
        assert_eq!(dr, Digest::of_bytes(&data));
    }
}
