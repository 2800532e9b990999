//! The deployment's operator token: whoever holds the token whose SHA-256 the
//! configuration names (`SEXTANT_OPERATOR_TOKEN_SHA256`) sees every tenant's usage and
//! nothing else; operators are not members of any team, and a team's credentials are
//! never an operator's.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of the operator token, parsed from its hex form.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorTokenHash([u8; 32]);

impl OperatorTokenHash {
    pub fn parse(hex_digest: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(hex_digest.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| anyhow::anyhow!("an operator token hash is 64 hex digits"))?;
        Ok(Self(bytes))
    }

    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    pub fn matches(&self, token: &str) -> bool {
        Self::of(token).0.ct_eq(&self.0).into()
    }
}

impl std::fmt::Debug for OperatorTokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorTokenHash(..)")
    }
}

/// The operator token's hash from `SEXTANT_OPERATOR_TOKEN_SHA256`, if set.
pub fn from_env() -> anyhow::Result<Option<OperatorTokenHash>> {
    std::env::var("SEXTANT_OPERATOR_TOKEN_SHA256")
        .ok()
        .filter(|value| !value.is_empty())
        .map(|value| {
            OperatorTokenHash::parse(&value)
                .map_err(|err| err.context("SEXTANT_OPERATOR_TOKEN_SHA256"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_whose_hash_is_configured_matches() {
        let hash = OperatorTokenHash::parse(&hex::encode(Sha256::digest(b"s3cret"))).unwrap();
        assert!(hash.matches("s3cret"));
        assert!(!hash.matches("s3cret "));
        assert!(!hash.matches(""));
        assert!(OperatorTokenHash::parse("abc").is_err());
        assert!(!format!("{hash:?}").contains(&hex::encode(Sha256::digest(b"s3cret"))));
    }
}
