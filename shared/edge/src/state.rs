//! What every handler shares, built once per process (at Lambda cold start, or when
//! `sextant serve` starts).

use std::sync::Arc;

use anyhow::Context;

use sextant_domain::credentials::jwt::Keyring;
use sextant_storage::clock::Clock;
use sextant_storage::{Storage, Store};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where clients reach the service, for URLs handed out (invites). Without it the
    /// URL is taken from the request's host (API Gateway's default domain).
    pub public_url: Option<url::Url>,
    pub session_ttl: time::Duration,
    pub access_token_ttl: time::Duration,
    /// How long a job's credential can live; its claim ending ends it sooner (on the
    /// data plane, its run ending does).
    pub job_token_ttl: time::Duration,
    pub invite_ttl: time::Duration,
    /// A running run not heard from for this long reads as `lost` (or `aborted`, when
    /// an abort was requested and never confirmed).
    pub heartbeat_timeout: time::Duration,
    /// How long an agent's claim on a queued job lasts without a heartbeat; after that
    /// the job may go to another agent.
    pub job_lease: time::Duration,
    pub plan: sextant_domain::billing::PricePlan,
    /// Who may see every tenant's usage; nobody when unset.
    pub operator_token: Option<sextant_domain::credentials::operator::OperatorTokenHash>,
    /// Largest request body accepted by the API (API Gateway's own cap is 10 MB and
    /// Lambda's 6 MB).
    pub body_limit: usize,
    /// Routes taking larger bodies than `body_limit` where the deployment allows them
    /// (`sextant serve` lets Neptune's ingest take the 16 MiB its client sends). Each
    /// such route caps a body sent without a length itself.
    pub route_body_limits: Vec<(&'static str, usize)>,
    /// Longest an API request may take, its body included, so a slow client cannot
    /// hold a handler (API Gateway gives up at 30 s too).
    pub request_deadline: std::time::Duration,
    /// Bytes of an uploaded artifact one completion call checks (a few seconds of
    /// reading on Lambda); a larger one takes a call per slice.
    pub verify_slice_bytes: u64,
    /// Requests per team and per credential (see `rate_limit`).
    pub rate_limits: crate::rate_limit::RateLimits,
}

impl Settings {
    pub fn new(public_url: Option<url::Url>) -> Self {
        Self {
            public_url,
            session_ttl: time::Duration::hours(12),
            access_token_ttl: time::Duration::minutes(15),
            job_token_ttl: time::Duration::days(30),
            invite_ttl: time::Duration::days(7),
            heartbeat_timeout: time::Duration::minutes(10),
            job_lease: time::Duration::minutes(1),
            plan: sextant_domain::billing::PricePlan::default(),
            operator_token: None,
            body_limit: 6 * 1024 * 1024,
            route_body_limits: Vec::new(),
            request_deadline: std::time::Duration::from_secs(30),
            verify_slice_bytes: sextant_domain::artifacts::VERIFY_SLICE_BYTES,
            rate_limits: crate::rate_limit::RateLimits::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub limiter: Arc<crate::rate_limit::RateLimiter>,
    pub settings: Arc<Settings>,
    /// The metering marks this process has written.
    pub marks: Arc<sextant_domain::metering::Marks>,
    /// Held while a write stores and settles a team's batches, when this process is
    /// the only one writing to its store (`sextant serve`); `None` where many are
    /// (Lambda), which settle later (`series::hot`).
    pub team_locks: Option<Arc<sextant_domain::series::hot::TeamLocks>>,
    /// Delivers the mail flows send (verification, password reset); `None` where no mail
    /// service is configured, and then those letters are not sent (logged as such).
    pub postman: Option<Arc<sextant_domain::postman::Postman>>,
}

impl AppState {
    pub fn new(storage: Storage, keyring: Keyring, settings: Settings) -> Self {
        Self {
            store: Store::new(storage),
            keyring: Arc::new(keyring),
            limiter: Arc::new(crate::rate_limit::RateLimiter::new(settings.rate_limits)),
            settings: Arc::new(settings),
            marks: Arc::default(),
            team_locks: Some(Arc::default()),
            postman: None,
        }
    }

    /// The same state sending mail through `mailer`.
    pub fn with_mailer(mut self, mailer: Arc<dyn sextant_storage::Mailer>) -> Self {
        self.postman = Some(Arc::new(sextant_domain::postman::Postman::new(mailer)));
        self
    }

    /// The same state for a process that shares its store with others writing to it:
    /// hot batches are settled behind the writes, not by them.
    pub fn deferring_settlement(mut self) -> Self {
        self.team_locks = None;
        self
    }

    fn settling(&self) -> sextant_domain::series::hot::Settling<'_> {
        match &self.team_locks {
            Some(locks) => sextant_domain::series::hot::Settling::Inline(locks),
            None => sextant_domain::series::hot::Settling::Deferred,
        }
    }

    /// The same state reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.store.clock = clock;
        self
    }

    /// What a write counting points needs: the plan's cap and this process's marks.
    pub fn meter(&self) -> sextant_domain::metering::Meter<'_> {
        sextant_domain::metering::Meter {
            marks: &self.marks,
            points_cap: self.settings.plan.monthly_points_cap,
        }
    }

    pub fn queue_rules(&self) -> sextant_domain::queue::Rules<'_> {
        sextant_domain::queue::Rules {
            job_lease: self.settings.job_lease,
            heartbeat_timeout: self.settings.heartbeat_timeout,
            meter: self.meter(),
            settling: self.settling(),
        }
    }

    pub fn intake(&self) -> sextant_domain::series::batch::Intake<'_> {
        sextant_domain::series::batch::Intake {
            heartbeat_timeout: self.settings.heartbeat_timeout,
            meter: self.meter(),
            settling: self.settling(),
        }
    }

    pub fn sessions(&self) -> sextant_domain::accounts::Sessions<'_> {
        sextant_domain::accounts::Sessions {
            keyring: &self.keyring,
            ttl: self.settings.session_ttl,
        }
    }

    /// Mails the member who just opened `session` (a sign-up) the link that verifies
    /// their address. A letter that cannot go is logged, never an error: the member is
    /// signed up, and can ask for another.
    pub async fn mail_verification_link(
        &self,
        base: &url::Url,
        session: &sextant_domain::accounts::Session,
    ) {
        let Some(postman) = &self.postman else {
            tracing::warn!("no mail service is configured: the verification link was not sent");
            return;
        };
        if let Err(err) = sextant_domain::accounts::recovery::welcome(
            &self.store,
            &self.keyring,
            postman,
            base,
            &session.token,
        )
        .await
        {
            tracing::warn!(error = %err, "could not send the verification link");
        }
    }

    /// Mails `invite`'s link to the invitee; answers whether it went. A letter that
    /// cannot go is logged, never an error: the admin can resend it, or pass the link
    /// on themselves.
    pub async fn mail_invite(
        &self,
        tenant: &sextant_domain::tenancy::Tenant,
        invite: &sextant_domain::accounts::Invite,
        link: &url::Url,
    ) -> bool {
        let Some(postman) = &self.postman else {
            tracing::warn!("no mail service is configured: the invite was not mailed");
            return false;
        };
        sextant_domain::accounts::invites::mail(&self.store, postman, tenant, invite, link)
            .await
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err, "could not mail the invite");
                false
            })
    }

    /// Sets (or lifts) the team's budget and evaluates it at once
    /// (`budgets::set`), sending its letters through this process's postman, linking
    /// to `usage_page` (without a mail service the hourly run sends them later). This
    /// process's log calls see the new stop at once.
    pub async fn set_budget(
        &self,
        tenant: &sextant_domain::tenancy::Tenant,
        budget: Option<sextant_domain::budgets::Budget>,
        usage_page: &url::Url,
    ) -> Result<sextant_domain::budgets::BudgetStatus, sextant_domain::budgets::BudgetError> {
        let mail = self
            .postman
            .as_deref()
            .map(|postman| sextant_domain::budgets::Mail {
                postman,
                usage_page: Some(usage_page),
            });
        let status =
            sextant_domain::budgets::set(&self.store, &self.settings.plan, mail, tenant, budget)
                .await;
        self.marks.unstopped.forget(tenant);
        status
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.store.now()
    }

    /// The Lambda configuration over `storage` (the functions' AWS adapters): signing
    /// keys from `SEXTANT_JWT_KEYS`, public URL from `SEXTANT_PUBLIC_URL`,
    /// heartbeat timeout from `SEXTANT_HEARTBEAT_TIMEOUT_SECS` and the job lease from
    /// `SEXTANT_JOB_LEASE_SECS` if set, the price plan
    /// from `SEXTANT_PLAN_*` and the operator from `SEXTANT_OPERATOR_TOKEN_SHA256`.
    pub fn from_env(storage: Storage) -> anyhow::Result<Self> {
        let keyring = Keyring::from_spec(
            &std::env::var("SEXTANT_JWT_KEYS").context("SEXTANT_JWT_KEYS is not set")?,
        )?;
        let public_url = std::env::var("SEXTANT_PUBLIC_URL")
            .ok()
            .map(|url| url.parse().context("SEXTANT_PUBLIC_URL is not a URL"))
            .transpose()?;
        let mut settings = Settings::new(public_url);
        settings.plan = sextant_domain::billing::PricePlan::from_env()?;
        settings.operator_token = sextant_domain::credentials::operator::from_env()?;
        settings.rate_limits = crate::rate_limit::RateLimits::from_env()?;
        if let Ok(secs) = std::env::var("SEXTANT_HEARTBEAT_TIMEOUT_SECS") {
            let secs: u32 = secs
                .parse()
                .context("SEXTANT_HEARTBEAT_TIMEOUT_SECS is not a number of seconds")?;
            settings.heartbeat_timeout = time::Duration::seconds(secs.into());
        }
        if let Ok(secs) = std::env::var("SEXTANT_JOB_LEASE_SECS") {
            let secs: u32 = secs
                .parse()
                .ok()
                .filter(|&secs| secs > 0)
                .context("SEXTANT_JOB_LEASE_SECS is not a positive number of seconds")?;
            settings.job_lease = time::Duration::seconds(secs.into());
        }
        Ok(Self::new(storage, keyring, settings).deferring_settlement())
    }
}
