//! CSRF tokens for the web pages' forms: a signed double submit. The browser holds a
//! random value in a cookie of its own (HttpOnly, SameSite=Strict); each form carries
//! an HMAC of that value under a server secret derived from the JWT keyring. A forged
//! form from another site cannot read the cookie, so it cannot compute the field; a
//! value planted in the cookie is useless without the server's signature of it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use sextant_domain::credentials::jwt::Keyring;

/// The label the CSRF secret is derived under; no other key uses it.
const LABEL: &str = "web pages: csrf";
/// 32 random bytes in unpadded base64url.
const VALUE_CHARS: usize = 43;

/// Signs and checks the form field for a cookie value.
pub struct CsrfKey([u8; 32]);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    pub fn from_keyring(keyring: &Keyring) -> Self {
        Self(keyring.derive(LABEL))
    }

    /// A fresh random cookie value.
    pub fn new_cookie_value() -> String {
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    }

    /// Whether a cookie value is one `new_cookie_value` could have made.
    pub fn is_cookie_value(value: &str) -> bool {
        value.len() == VALUE_CHARS
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    fn mac(&self, cookie_value: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(cookie_value.as_bytes());
        mac
    }

    /// The hidden form field that goes with a cookie value.
    pub fn token_for(&self, cookie_value: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(cookie_value).finalize().into_bytes())
    }

    /// Whether `token` is the field for `cookie_value`, compared in constant time.
    pub fn verify(&self, cookie_value: &str, token: &str) -> bool {
        if !Self::is_cookie_value(cookie_value) {
            return false;
        }
        let expected = self.token_for(cookie_value);
        expected.as_bytes().ct_eq(token.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CsrfKey {
        CsrfKey::from_keyring(&Keyring::new(&[("k".into(), vec![byte; 32])]).unwrap())
    }

    #[test]
    fn a_token_verifies_only_with_its_own_cookie_and_key() {
        let cookie = CsrfKey::new_cookie_value();
        assert!(CsrfKey::is_cookie_value(&cookie));
        let token = key(1).token_for(&cookie);
        assert!(key(1).verify(&cookie, &token));
        assert!(!key(2).verify(&cookie, &token));
        assert!(!key(1).verify(&CsrfKey::new_cookie_value(), &token));
        assert!(!key(1).verify(&cookie, ""));
        assert!(!key(1).verify(&cookie, &token[1..]));
        // The cookie value itself is not a valid field.
        assert!(!key(1).verify(&cookie, &cookie));
    }

    #[test]
    fn malformed_cookie_values_verify_nothing() {
        let k = key(1);
        for bad in [
            "",
            "short",
            &"x".repeat(44),
            &format!("{}=", "a".repeat(42)),
        ] {
            assert!(!k.verify(bad, &k.token_for(bad)), "{bad}");
        }
    }
}
