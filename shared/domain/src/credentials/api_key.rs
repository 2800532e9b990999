//! API keys: `sxt_<key id>_<secret>`. The id finds the key's record; only a SHA-256
//! of the secret is stored. The secret has 256 random bits, so a fast hash is enough
//! (no dictionary to attack) and keeps every authenticated request cheap.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::ApiKeyId;

const PREFIX: &str = "sxt_";
/// `key_` and a 26-character ULID.
const ID_CHARS: usize = 30;
/// 32 random bytes in unpadded base64url.
const SECRET_CHARS: usize = 43;

/// A key's full text, shown to its creator once.
pub struct ApiKeySecret {
    pub id: ApiKeyId,
    secret: String,
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeySecret({}, ..)", self.id)
    }
}

impl ApiKeySecret {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self {
            id: ApiKeyId::generate(),
            secret: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    /// Parses a bearer credential that looks like an API key; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        // The secret's alphabet includes '_', so split by position, not by separator.
        let rest = text.strip_prefix(PREFIX)?;
        let id = rest.get(..ID_CHARS)?;
        let secret = rest.get(ID_CHARS..)?.strip_prefix('_')?;
        if secret.len() != SECRET_CHARS {
            return None;
        }
        Some(Self {
            id: id.parse().ok()?,
            secret: secret.to_owned(),
        })
    }

    pub fn looks_like_key(text: &str) -> bool {
        text.starts_with(PREFIX)
    }

    /// What is stored: bound to the key id so a hash cannot be moved to another key.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.id.to_string().as_bytes());
        hasher.update(b":");
        hasher.update(self.secret.as_bytes());
        hex::encode(hasher.finalize())
    }

    /// Constant-time comparison against a stored hash.
    pub fn matches(&self, stored_hash: &str) -> bool {
        self.hash().as_bytes().ct_eq(stored_hash.as_bytes()).into()
    }

    /// The full key text, to hand to its creator once.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}_{}", self.id, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_and_matches_its_hash() {
        let key = ApiKeySecret::generate();
        let text = key.expose();
        let parsed = ApiKeySecret::parse(&text).unwrap();
        assert_eq!(parsed.id, key.id);
        assert!(parsed.matches(&key.hash()));
    }

    #[test]
    fn keys_whose_secret_contains_underscores_parse() {
        for _ in 0..200 {
            let key = ApiKeySecret::generate();
            assert!(
                ApiKeySecret::parse(&key.expose())
                    .is_some_and(|parsed| parsed.matches(&key.hash()))
            );
        }
    }

    #[test]
    fn a_key_with_an_altered_secret_does_not_match() {
        let key = ApiKeySecret::generate();
        let mut text = key.expose();
        let last = text.pop().unwrap();
        text.push(if last == 'A' { 'B' } else { 'A' });
        let forged = ApiKeySecret::parse(&text).unwrap();
        assert!(!forged.matches(&key.hash()));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for bad in [
            "",
            "sxt_",
            "sxt_key_x_y",
            "bearer",
            "sxt_key_01jd8w3n5rj7mq3a2n9f4e2v6k_short",
        ] {
            assert!(ApiKeySecret::parse(bad).is_none(), "{bad}");
        }
    }
}
