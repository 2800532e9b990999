//! Password hashing with Argon2id. Hashing is deliberately slow and memory-hard, so it
//! runs on a few threads of its own, never on the async executor, each reusing one
//! block of Argon2 memory: what hashing holds is fixed, whatever arrives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use tokio::sync::Semaphore;

use super::CredentialError;

type Result<T, E = CredentialError> = std::result::Result<T, E>;

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
    pub fn parse(password: String) -> Result<Self> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(CredentialError::WeakPassword);
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(CredentialError::PasswordTooLong);
        }
        Ok(Self(password))
    }
}

/// Memory one Argon2id computation takes with the crate's default (OWASP-recommended)
/// parameters: m = 19 MiB.
pub const HASH_MEMORY_BYTES: usize = Params::DEFAULT_M_COST as usize * 1024;
/// Password attempts (sign-ups, log-ins, invite acceptances) one client address may
/// have under way at once; more are refused (429) before they read or hash anything,
/// so one address can take neither every hashing slot nor the store's attention.
pub const MAX_ATTEMPTS_PER_ADDRESS: usize = 2;
/// How long a request waits for a hashing slot before it is told to come back (503).
const SLOT_WAIT: Duration = Duration::from_secs(5);

/// The process's hashing slots: Argon2 needs `HASH_MEMORY_BYTES` each, so a flood of
/// sign-ups or log-ins can hold at most `slots × HASH_MEMORY_BYTES` of memory, and
/// waits or is refused beyond that.
///
/// Each slot is a thread of its own rather than a task on tokio's blocking pool: the
/// allocator keeps an arena per thread and holds on to a freed 19 MiB block in it, so
/// hashing on hundreds of pool threads would keep hundreds of blocks resident.
struct Gate {
    slots: Semaphore,
    hashers: Mutex<std::sync::mpsc::Sender<Job>>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

type Job = Box<dyn FnOnce() + Send>;

static GATE: LazyLock<Gate> = LazyLock::new(|| {
    // As many as there are cores (hashing is CPU-bound), never fewer than two nor more
    // than eight.
    let slot_count = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(2, 8);
    let (hashers, jobs) = std::sync::mpsc::channel::<Job>();
    let jobs = std::sync::Arc::new(Mutex::new(jobs));
    for n in 0..slot_count {
        let jobs = std::sync::Arc::clone(&jobs);
        std::thread::Builder::new()
            .name(format!("password-hasher-{n}"))
            .spawn(move || {
                loop {
                    let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })
            .expect("starting a password hashing thread");
    }
    Gate {
        slots: Semaphore::new(slot_count),
        hashers: Mutex::new(hashers),
        per_address: Mutex::default(),
    }
});

/// One of an address's attempts under way; dropping it frees the place.
#[derive(Debug)]
#[must_use = "the place is given back when it is dropped"]
pub struct AddressPlace(IpAddr);

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut places = GATE
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = places.get_mut(&self.0) {
            *count -= 1;
            if *count == 0 {
                places.remove(&self.0);
            }
        }
    }
}

/// A place for a password attempt from `client`, held until the attempt is over;
/// 429 while the address has `MAX_ATTEMPTS_PER_ADDRESS` under way.
pub fn place_for(client: IpAddr) -> Result<AddressPlace> {
    let mut places = GATE
        .per_address
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let count = places.entry(client).or_default();
    if *count >= MAX_ATTEMPTS_PER_ADDRESS {
        return Err(CredentialError::TooManyAtOnce);
    }
    *count += 1;
    Ok(AddressPlace(client))
}

/// Runs `work` (Argon2) on a hashing thread once one is free.
async fn gated<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _slot = tokio::time::timeout(SLOT_WAIT, GATE.slots.acquire())
        .await
        .map_err(|_| CredentialError::HashersBusy)?
        .map_err(|err| CredentialError::Hashing(err.into()))?;
    // A slot held means a hashing thread is free for this job.
    let (done, outcome) = tokio::sync::oneshot::channel();
    GATE.hashers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(Box::new(move || {
            let _ = done.send(work());
        }))
        .map_err(|_| CredentialError::Hashing(anyhow::anyhow!("the password hashers are gone")))?;
    outcome
        .await
        .map_err(|_| CredentialError::Hashing(anyhow::anyhow!("a password hasher dropped its job")))
}

thread_local! {
    /// A hashing thread's Argon2 memory, allocated on its first hash and reused for
    /// every later one. (Allocating it per hash let the allocator keep a dozen freed
    /// 19 MiB blocks resident under a flood of log-ins.)
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `argon2` over this thread's memory, of `blocks` blocks; a hash stored with
/// more memory than the default gets a block of its own.
fn with_memory<T>(blocks: usize, argon2: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with_borrow_mut(|memory| {
        if blocks > Params::DEFAULT.block_count() {
            return argon2(&mut vec![Block::new(); blocks]);
        }
        if memory.len() < blocks {
            memory.resize(Params::DEFAULT.block_count(), Block::new());
        }
        argon2(&mut memory[..blocks])
    })
}

/// A PHC string of `password` hashed with Argon2id and the crate's default
/// (OWASP-recommended) parameters: the format `Argon2::hash_password` writes.
fn hash_now(password: &[u8]) -> anyhow::Result<String> {
    let params = Params::default();
    let salt = Salt::generate();
    let mut output = [0; Params::DEFAULT_OUTPUT_LEN];
    with_memory(params.block_count(), |memory| {
        Argon2::from(&params).hash_password_into_with_memory(password, &salt, &mut output, memory)
    })
    .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::default().into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt),
        hash: Some(Output::new(&output)?),
    };
    Ok(hash.to_string())
}

/// Whether `candidate` hashes, with the algorithm, version, parameters and salt of
/// the PHC string `stored`, to its output (compared in constant time).
fn verify_now(candidate: &[u8], stored: &str) -> anyhow::Result<bool> {
    let stored = PasswordHash::new(stored)?;
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(stored.algorithm.as_str())?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&stored)?;
    let mut output = vec![0; expected.len()];
    with_memory(params.block_count(), |memory| {
        Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(
            candidate,
            salt,
            &mut output,
            memory,
        )
    })
    .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))?;
    Ok(Output::new(&output)? == *expected)
}

/// Hashes with Argon2id and the crate's default (OWASP-recommended) parameters.
pub async fn hash(password: Password) -> Result<String> {
    gated(move || hash_now(password.0.as_bytes()))
        .await?
        .map_err(CredentialError::Hashing)
}

/// A hash of a random password, verified against when the account does not exist,
/// so a failed login takes as long whether or not the e-mail is registered.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| {
    let random: [u8; 16] = rand::random();
    hash_now(&random).unwrap_or_default()
});

/// Whether the password matches the stored hash (or, with no hash, spends the same
/// time and answers false).
pub async fn verify(candidate: String, stored: Option<String>) -> Result<bool> {
    gated(move || {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| DECOY_HASH.clone());
        Ok::<_, anyhow::Error>(verify_now(candidate.as_bytes(), &stored)? && exists)
    })
    .await?
    .map_err(CredentialError::Hashing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Coded, ErrorCode};

    #[test]
    fn short_passwords_are_refused_with_a_stable_code() {
        let err = Password::parse("elevenchars".into()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::WeakPassword);
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

    /// Hashes stored by the version before, which let the crate allocate its memory,
    /// verify; and the crate verifies what this one writes.
    #[test]
    fn hashes_are_interchangeable_with_the_crates_own_api() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let before = Argon2::default()
            .hash_password(b"an older password")
            .unwrap()
            .to_string();
        assert!(verify_now(b"an older password", &before).unwrap());
        assert!(!verify_now(b"another password", &before).unwrap());
        let now = hash_now(b"a newer password").unwrap();
        assert!(now.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{now}");
        let parsed = PasswordHash::new(&now).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"a newer password", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"not it at all", &parsed)
                .is_err()
        );
        // Hashes with other parameters verify too, with memory of their own.
        let heavier = Argon2::from(Params::new(32 * 1024, 1, 1, None).unwrap())
            .hash_password(b"heavier")
            .unwrap()
            .to_string();
        assert!(verify_now(b"heavier", &heavier).unwrap());
    }

    #[test]
    fn an_address_gets_two_attempts_at_once_and_a_429_for_a_third() {
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let first = place_for(client).unwrap();
        let second = place_for(client).unwrap();
        let third = place_for(client).unwrap_err();
        assert_eq!(third.code(), ErrorCode::RateLimited);
        // Another address is not held back by this one's attempts.
        let elsewhere = place_for("192.0.2.8".parse().unwrap()).unwrap();
        drop((first, elsewhere));
        // A place given back is free again.
        let again = place_for(client).unwrap();
        drop((second, again));
        assert!(!GATE.per_address.lock().unwrap().contains_key(&client));
    }
}
