//! Local mode's server secrets (JWT signing key, URL signing key), generated on first
//! start and kept in the data directory readable only by its owner. Deployments get
//! theirs from the environment instead.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Secrets {
    jwt_key_id: String,
    jwt_secret: String,
    url_signing_key: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("jwt_key_id", &self.jwt_key_id)
            .finish_non_exhaustive()
    }
}

fn random_secret() -> String {
    STANDARD.encode(rand::random::<[u8; 32]>())
}

impl Secrets {
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading secrets from {}", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let secrets = Self {
                    jwt_key_id: format!("local-{}", &random_secret()[..8].replace(['+', '/'], "x")),
                    jwt_secret: random_secret(),
                    url_signing_key: random_secret(),
                };
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                file.write_all(&serde_json::to_vec_pretty(&secrets)?)?;
                file.sync_all()?;
                Ok(secrets)
            }
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn jwt_keys(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        Ok(vec![(
            self.jwt_key_id.clone(),
            STANDARD.decode(&self.jwt_secret)?,
        )])
    }

    pub fn url_signing_key(&self) -> anyhow::Result<Vec<u8>> {
        Ok(STANDARD.decode(&self.url_signing_key)?)
    }
}
