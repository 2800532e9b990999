//! Password hashing with Argon2id. Hashing is deliberately slow, so it runs on the
//! blocking pool, never on the async executor.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::ApiError;

pub const MIN_PASSWORD_CHARS: usize = 12;
/// Argon2 cost grows with input; a cap keeps one request from burning a core.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password that meets the length rules; only ever held briefly, never logged.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl utoipa::PartialSchema for Password {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Password,
            )))
            .min_length(Some(MIN_PASSWORD_CHARS))
            .description(Some("At least 12 characters, at most 1,024 bytes."))
            .into()
    }
}

impl utoipa::ToSchema for Password {}

impl Password {
    pub fn parse(password: String) -> Result<Self, ApiError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(ApiError::invalid(
                "weak_password",
                format!("passwords need at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(ApiError::invalid(
                "invalid_password",
                format!("passwords are at most {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
        Ok(Self(password))
    }
}

/// Hashes with Argon2id and the crate's default (OWASP-recommended) parameters.
pub async fn hash(password: Password) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.0.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|err| anyhow::anyhow!("hashing password: {err}"))
    })
    .await?
}

/// A hash of a random password, verified against when the account does not exist,
/// so a failed login takes as long whether or not the e-mail is registered.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| {
    let random: [u8; 16] = rand::random();
    Argon2::default()
        .hash_password(&random)
        .map(|hash| hash.to_string())
        .unwrap_or_default()
});

/// Whether the password matches the stored hash (or, with no hash, spends the same
/// time and answers false).
pub async fn verify(candidate: String, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| DECOY_HASH.clone());
        let parsed =
            PasswordHash::new(&stored).map_err(|err| anyhow::anyhow!("stored hash: {err}"))?;
        let matches = Argon2::default()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok();
        Ok(exists && matches)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_passwords_are_refused_with_a_stable_code() {
        let err = Password::parse("elevenchars".into()).unwrap_err();
        assert_eq!(err.code(), "weak_password");
        assert!(Password::parse("twelve chars".into()).is_ok());
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hashed = hash(Password::parse("correct horse battery".into()).unwrap())
            .await
            .unwrap();
        assert!(hashed.starts_with("$argon2id$"));
        assert!(
            verify("correct horse battery".into(), Some(hashed.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify("wrong horse battery".into(), Some(hashed))
                .await
                .unwrap()
        );
        assert!(!verify("correct horse battery".into(), None).await.unwrap());
    }
}
