//! Content ids: the BLAKE3 hash of an artifact's bytes, written as 64 lowercase hex digits.
//!
//! Everything Kiln stores in its artifact store is addressed by its content id, so a reader can
//! always check that what it got is what was written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The BLAKE3 hash of some content.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentId(String);

/// A string that is not 64 lowercase hex digits.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a content id (64 lowercase hex digits)")]
pub struct BadContentId(pub String);

impl ContentId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hash(blake3::hash(bytes))
    }

    /// The id for a finished BLAKE3 hash.
    pub fn from_hash(hash: blake3::Hash) -> Self {
        Self(hash.to_hex().to_string())
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, enough to tell ids apart in a listing.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl FromStr for ContentId {
    type Err = BadContentId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadContentId(s.chars().take(80).collect()))
        }
    }
}

impl TryFrom<String> for ContentId {
    type Error = BadContentId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ContentId> for String {
    fn from(id: ContentId) -> String {
        id.0
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = ContentId::of(b"hello");
        assert_eq!(id.as_str().len(), 64);
        assert_eq!(id.as_str().parse::<ContentId>().unwrap(), id);
        assert!("ABC".parse::<ContentId>().is_err());
        assert!("g".repeat(64).parse::<ContentId>().is_err());
        assert_ne!(ContentId::of(b"hello"), ContentId::of(b"hello!"));
    }
}
