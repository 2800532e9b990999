//! Short-lived JWTs. One pinned algorithm (HS256), issuer, audience, expiry and
//! issued-at checked, and a key id in the header so signing keys rotate without
//! invalidating tokens signed by the previous key.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Role;
use crate::ids::{ApiKeyId, RunId, TenantId, UserId};

const ALGORITHM: Algorithm = Algorithm::HS256;
pub const ISSUER: &str = "sextant";
pub const AUDIENCE: &str = "sextant-api";
/// Signing secrets shorter than this are refused at start-up.
const MIN_SECRET_BYTES: usize = 32;

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// A signed-in member (sign-up, log-in, invite acceptance). Each request also checks
    /// the member still exists and the session was not ended (by `sid`), so removal,
    /// role changes and log-out apply at once.
    Session {
        user: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sid: Option<u64>,
    },
    /// Exchanged for an API key. Its `scope` says where its signature alone is
    /// enough; anywhere else it is checked against its key as the key itself is.
    Access { key: ApiKeyId, owner: UserId },
    /// Trades for a new access token and a new refresh token (OAuth's refresh grant,
    /// which Neptune's client speaks), checked against its key as the key itself is.
    /// Never a bearer credential.
    Refresh { key: ApiKeyId, owner: UserId },
    /// A queued job's command: only its run, only while the claim `attempt` (made
    /// with the agent's `key`) holds the job.
    Job {
        key: ApiKeyId,
        owner: UserId,
        run: RunId,
        attempt: u32,
    },
}

/// Where a token is trusted on its signature alone, without a read of the grant it was
/// derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The data plane: log batches (with their heartbeats) and images, where a read per
    /// request would double the cost of the hot path. Revoking the grant stops such a
    /// token there only when it expires (minutes); everywhere else at once.
    Data,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub tid: TenantId,
    pub role: Role,
    /// Absent: the token is checked against its grant on every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(flatten)]
    pub subject: Subject,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("SEXTANT_JWT_KEYS must be `kid:base64secret[,kid:base64secret...]`")]
    Malformed,
    #[error("JWT signing secrets need at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
}

/// The signing key plus every key still accepted for verification.
pub struct Keyring {
    signing_kid: String,
    signing: EncodingKey,
    /// The signing key's secret, only to derive other keys from (`derive`).
    signing_secret: Vec<u8>,
    verifying: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("signing_kid", &self.signing_kid)
            .field("kids", &self.verifying.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// The first key signs; all verify. Keys are `(kid, secret)`.
    pub fn new(keys: &[(String, Vec<u8>)]) -> Result<Self, KeyringError> {
        let (signing_kid, signing_secret) = keys.first().ok_or(KeyringError::Malformed)?;
        if keys
            .iter()
            .any(|(_, secret)| secret.len() < MIN_SECRET_BYTES)
        {
            return Err(KeyringError::WeakSecret);
        }
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
        validation.leeway = 5;
        Ok(Self {
            signing_kid: signing_kid.clone(),
            signing: EncodingKey::from_secret(signing_secret),
            signing_secret: signing_secret.clone(),
            verifying: keys
                .iter()
                .map(|(kid, secret)| (kid.clone(), DecodingKey::from_secret(secret)))
                .collect(),
            validation,
        })
    }

    /// Parses `kid:base64secret,kid:base64secret`, the form the functions read from
    /// their environment.
    pub fn from_spec(spec: &str) -> Result<Self, KeyringError> {
        let keys = spec
            .split(',')
            .map(|entry| {
                let (kid, secret) = entry
                    .trim()
                    .split_once(':')
                    .ok_or(KeyringError::Malformed)?;
                let secret = STANDARD
                    .decode(secret)
                    .map_err(|_| KeyringError::Malformed)?;
                if kid.is_empty() {
                    return Err(KeyringError::Malformed);
                }
                Ok((kid.to_owned(), secret))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&keys)
    }

    /// A secret for another purpose (say, CSRF tokens), derived from the signing
    /// secret under a label of its own: HMAC-SHA256(signing secret, label). Keys of
    /// different labels are unrelated, and none reveals the signing secret. Rotating
    /// the signing key rotates every derived key with it.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.signing_secret)
            .expect("HMAC takes a key of any length");
        mac.update(b"sextant derived key\0");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn issue(
        &self,
        tenant: TenantId,
        role: Role,
        subject: Subject,
        ttl: time::Duration,
    ) -> jsonwebtoken::errors::Result<(String, OffsetDateTime)> {
        let now = OffsetDateTime::now_utc();
        let expires = now + ttl;
        // Sessions are always checked against the member; access and job tokens are
        // trusted on their signature on the data plane only.
        let scope = match subject {
            Subject::Session { .. } | Subject::Refresh { .. } => None,
            Subject::Access { .. } | Subject::Job { .. } => Some(Scope::Data),
        };
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now.unix_timestamp(),
            exp: expires.unix_timestamp(),
            tid: tenant,
            role,
            scope,
            subject,
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signing)?;
        Ok((token, expires))
    }

    /// Verifies signature, algorithm, issuer, audience and expiry; `None` for any
    /// token that fails, whatever the reason (the caller answers 401 either way).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != ALGORITHM {
            return None;
        }
        let key = self.verifying.get(header.kid.as_deref()?)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .ok()?
            .claims;
        // A token issued in the future was not issued by us.
        (claims.iat <= OffsetDateTime::now_utc().unix_timestamp() + self.validation.leeway as i64)
            .then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(kid: &str, byte: u8) -> Keyring {
        Keyring::new(&[(kid.into(), vec![byte; 32])]).unwrap()
    }

    fn session() -> (TenantId, Subject) {
        (
            TenantId::generate(),
            Subject::Session {
                user: UserId::generate(),
                sid: Some(7),
            },
        )
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let keys = keyring("k1", 1);
        let (tenant, subject) = session();
        let (token, _) = keys
            .issue(tenant, Role::Member, subject, time::Duration::minutes(5))
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.tid, tenant);
        assert_eq!(claims.subject, subject);
        assert_eq!(claims.role, Role::Member);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = keyring("k1", 1);
        let (tenant, subject) = session();
        let (token, _) = keys
            .issue(tenant, Role::Member, subject, time::Duration::minutes(-5))
            .unwrap();
        assert!(keys.verify(&token).is_none());
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let (tenant, subject) = session();
        let (token, _) = keyring("k1", 2)
            .issue(tenant, Role::Admin, subject, time::Duration::minutes(5))
            .unwrap();
        assert!(keyring("k1", 1).verify(&token).is_none());
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let keys = keyring("k1", 1);
        let (tenant, subject) = session();
        let (token, _) = keys
            .issue(tenant, Role::Admin, subject, time::Duration::minutes(5))
            .unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
        assert!(keys.verify(&format!("{header}.{payload}.")).is_none());
        assert!(keys.verify(&format!("{header}.{payload}")).is_none());
    }

    #[test]
    fn tokens_signed_by_a_retired_key_verify_after_rotation() {
        let old = keyring("old", 1);
        let (tenant, subject) = session();
        let (token, _) = old
            .issue(tenant, Role::Viewer, subject, time::Duration::minutes(5))
            .unwrap();
        let rotated =
            Keyring::new(&[("new".into(), vec![9; 32]), ("old".into(), vec![1; 32])]).unwrap();
        assert!(rotated.verify(&token).is_some());
        let (fresh, _) = rotated
            .issue(tenant, Role::Viewer, subject, time::Duration::minutes(5))
            .unwrap();
        assert!(
            old.verify(&fresh).is_none(),
            "old ring does not know the new kid"
        );
    }

    #[test]
    fn derived_keys_differ_by_label_and_by_signing_secret() {
        let keys = keyring("k1", 1);
        assert_eq!(keys.derive("csrf"), keyring("k1", 1).derive("csrf"));
        assert_ne!(keys.derive("csrf"), keys.derive("other"));
        assert_ne!(keys.derive("csrf"), keyring("k1", 2).derive("csrf"));
        assert_ne!(keys.derive("csrf").to_vec(), vec![1u8; 32]);
    }

    #[test]
    fn short_secrets_and_malformed_specs_are_refused() {
        assert!(matches!(
            Keyring::new(&[("k".into(), vec![0; 8])]),
            Err(KeyringError::WeakSecret)
        ));
        assert!(Keyring::from_spec("nocolon").is_err());
        assert!(Keyring::from_spec(":AAAA").is_err());
        let secret = STANDARD.encode([7u8; 32]);
        assert!(Keyring::from_spec(&format!("k1:{secret}")).is_ok());
    }
}
