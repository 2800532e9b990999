//! Monthly budgets: a team's admins set an amount a month; when the month's spend so
//! far (`billing::usage`, provisional hours included) reaches 50, 80 and 100 % of it,
//! the team's admins with a verified address are mailed, once per threshold and month,
//! and the pages show a banner. With a hard stop, log calls past 100 % are refused
//! (`usage::Limit::Budget`, 429 `budget_exceeded`).
//!
//! Records, in the team's usage partition (`{tenant}#usage`):
//! - `budget`: the amount and whether it stops logging;
//! - `budget#{YYYY-MM}#{threshold}`: the notice of a threshold reached in a month,
//!   written only if absent (so it is sent once), with the admins it reached; one not
//!   delivered to every admin yet is sent again by the next hourly run. Thresholds
//!   reached in the same evaluation make one letter, the highest's.
//!
//! A global mark `metering#budgets` / `{tenant}` lists the teams with a budget, so the
//! hourly run (`evaluate_marked`) visits only them. Each evaluation also writes the
//! month's hard stop onto the `totals` item (`usage::set_budget_stop`) as the most
//! points the rest of the budget buys at the plan's price, after the storage so far:
//! the cap that every log call's counter update is conditioned on, so points never
//! pass it. Storage keeps accruing between runs, so the spend can pass the budget by
//! up to an hour's storage (and the points line's rounding) before the next run stops
//! logging; a new month has no stop until its first run (a minute past its first
//! hour).
//!
//! Changing the budget evaluates at once: a threshold the new budget puts the spend
//! below is forgotten (reaching it again tells again), one it puts the spend over is
//! told now, and the stop follows the new amount. Lifting the budget forgets the
//! month's notices and the stop.

use std::collections::BTreeMap;
use std::str::FromStr;

use futures::StreamExt;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::accounts::{self, AccountError};
use crate::billing::{self, BillingError, MonthUsage, PricePlan};
use crate::calendar::BillingMonth;
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::TenantId;
use crate::postman::{self, Postman};
use crate::tenancy::Tenant;
use crate::usage;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, Query, StoreError, StoreResult};
use sextant_storage::records::{doc_item, get_doc, query_docs};

/// The shares of the budget whose reaching is told, in percent.
pub const THRESHOLDS: [u8; 3] = [50, 80, 100];

/// The largest budget taken, in the currency's units: anything above is a slip of the
/// keyboard, not a budget.
const MAX_BUDGET: i64 = 1_000_000_000;

const MARKED: &str = "metering#budgets";

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl Coded for BudgetError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidBudget,
            Self::Store(err) => err.code(),
            Self::Account(err) => err.code(),
            Self::Billing(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Store(err) => err.into(),
            Self::Account(err) => err.into(),
            Self::Billing(err) => err.into(),
            invalid => Error::new(invalid.code(), invalid.to_string()),
        }
    }
}

type Result<T, E = BudgetError> = std::result::Result<T, E>;

/// A team's monthly budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// In the plan's currency, with its minor digits.
    pub monthly_budget: Decimal,
    /// Refuse log calls once the month's spend reaches the budget.
    pub hard_stop: bool,
}

impl Budget {
    /// A budget as an admin asks for it: `amount` as typed (`"25"`, `"25.00"`), a
    /// plain positive decimal with at most the currency's minor digits, up to a
    /// billion; or none, which lifts the budget (and then takes no hard stop).
    pub fn parse(plan: &PricePlan, amount: Option<&str>, hard_stop: bool) -> Result<Option<Self>> {
        match amount {
            Some(amount) => Self::parse_amount(plan, amount, hard_stop).map(Some),
            None if hard_stop => Err(BudgetError::Invalid(
                "a hard stop needs a monthly_budget".to_owned(),
            )),
            None => Ok(None),
        }
    }

    fn parse_amount(plan: &PricePlan, amount: &str, hard_stop: bool) -> Result<Self> {
        let amount = amount.trim();
        let (units, minor) = amount.split_once('.').unwrap_or((amount, ""));
        let digits = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
        if units.is_empty() || !digits(units) || !digits(minor) || amount.ends_with('.') {
            return Err(BudgetError::Invalid(format!(
                "monthly_budget is an amount in {} such as \"25.00\", not {amount:?}",
                plan.currency
            )));
        }
        if minor.len() > plan.minor_digits as usize {
            return Err(BudgetError::Invalid(format!(
                "monthly_budget has at most {} digits after the point",
                plan.minor_digits
            )));
        }
        let too_large = || {
            BudgetError::Invalid(format!(
                "monthly_budget is at most {MAX_BUDGET} {}",
                plan.currency
            ))
        };
        // Digits only, so the one failure left is a number too long to hold.
        let mut monthly_budget = Decimal::from_str(amount).map_err(|_| too_large())?;
        if monthly_budget > Decimal::from(MAX_BUDGET) {
            return Err(too_large());
        }
        if monthly_budget.is_zero() {
            return Err(BudgetError::Invalid(
                "monthly_budget is more than zero (to stop paying past the free allowance, \
                 set the smallest amount with a hard stop)"
                    .to_owned(),
            ));
        }
        monthly_budget.rescale(plan.minor_digits);
        Ok(Self {
            monthly_budget,
            hard_stop,
        })
    }

    fn reached(&self, spent: Decimal, threshold: u8) -> bool {
        spent * Decimal::from(100) >= self.monthly_budget * Decimal::from(threshold)
    }

    /// The most points the month may hold under the hard stop: those logged so far,
    /// the free ones left, and those the rest of the budget buys. `None` while points
    /// cost nothing and money is left.
    fn stop_points(&self, plan: &PricePlan, usage: &MonthUsage) -> Option<u64> {
        let left = self.monthly_budget - usage.total;
        if left <= Decimal::ZERO {
            return Some(usage.points);
        }
        let per_point = plan.per_million_points / Decimal::from(1_000_000);
        if per_point.is_zero() {
            return None;
        }
        let bought = (left / per_point).floor().to_u64().unwrap_or(u64::MAX);
        Some(
            usage
                .points
                .saturating_add(plan.free_points.saturating_sub(usage.points))
                .saturating_add(bought),
        )
    }
}

/// Drops the team's budget, without evaluating anything: for a team being deleted.
pub async fn forget(store: &Store, tenant: &Tenant) -> StoreResult<()> {
    store
        .kv
        .delete(&budget_key(tenant), Condition::None)
        .await?;
    store.kv.delete(&mark_key(tenant), Condition::None).await
}

fn budget_key(tenant: &Tenant) -> Key {
    Key::new(usage::partition(tenant), "budget")
}

fn mark_key(tenant: &Tenant) -> Key {
    Key::new(MARKED, tenant.id().to_string())
}

fn notices_prefix(month: BillingMonth) -> String {
    format!("budget#{month}#")
}

fn notice_key(tenant: &Tenant, month: BillingMonth, threshold: u8) -> Key {
    Key::new(
        usage::partition(tenant),
        format!("{}{threshold}", notices_prefix(month)),
    )
}

/// A threshold reached in a month, and whom it was told to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Notice {
    threshold: u8,
    /// The budget and the spend when it was reached.
    budget: Decimal,
    spent: Decimal,
    currency: String,
    #[serde(with = "time::serde::rfc3339")]
    reached_at: OffsetDateTime,
    /// The admins it was delivered to.
    delivered_to: Vec<String>,
    /// Delivered to every verified admin there was; otherwise the next run tries the
    /// others again.
    done: bool,
}

async fn notices(store: &Store, tenant: &Tenant, month: BillingMonth) -> Result<Vec<Notice>> {
    let query = Query::partition(usage::partition(tenant)).prefix(notices_prefix(month));
    Ok(query_docs(&*store.kv, query).await?)
}

/// How budget letters go out: the postman, and the usage page they link to (none when
/// the service does not know its public address).
#[derive(Debug, Clone, Copy)]
pub struct Mail<'a> {
    pub postman: &'a Postman,
    pub usage_page: Option<&'a url::Url>,
}

/// The usage page under the service's public base URL (which may carry a path, such
/// as an API Gateway stage): where budget letters send their readers.
pub fn usage_page(base: &url::Url) -> url::Url {
    let mut page = base.clone();
    page.set_path(&format!("{}/usage", base.path().trim_end_matches('/')));
    page.set_query(None);
    page
}

/// A team's budget this month, as `GET /v1/budget` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BudgetStatus {
    /// `YYYY-MM` (UTC).
    #[schema(example = "2026-11")]
    pub month: String,
    /// The ISO 4217 code of the amounts.
    #[schema(example = "USD")]
    pub currency: String,
    /// The budget a month; null when the team has none.
    #[schema(value_type = Option<String>, format = "decimal", example = "25.00", required = true)]
    pub monthly_budget: Option<Decimal>,
    /// Whether log calls are refused once the spend reaches the budget.
    pub hard_stop: bool,
    /// The month's total so far, provisional hours included.
    #[schema(value_type = String, format = "decimal", example = "12.40")]
    pub spent: Decimal,
    /// The spend as a whole percentage of the budget, rounded down; null without one.
    #[schema(required = true, example = 49)]
    pub percent: Option<u32>,
    /// The thresholds (of 50, 80, 100) reached and told this month, as of the last
    /// evaluation (hourly, and whenever the budget changes).
    pub notified: Vec<u8>,
    /// Log calls are refused now: the hard stop is on and the budget is spent.
    pub stopped: bool,
}

/// The team's budget in `month` and where its spend (`usage`, the month's) stands.
pub async fn status(
    store: &Store,
    plan: &PricePlan,
    tenant: &Tenant,
    month: BillingMonth,
    usage: &MonthUsage,
) -> Result<BudgetStatus> {
    let (budget, notices, totals) = futures::try_join!(
        async { Ok::<_, BudgetError>(get_doc::<Budget>(&*store.kv, &budget_key(tenant)).await?) },
        notices(store, tenant, month),
        async { Ok(usage::totals(store, tenant, month).await?) },
    )?;
    let mut notified: Vec<u8> = notices.iter().map(|notice| notice.threshold).collect();
    notified.sort_unstable();
    let percent = budget.as_ref().map(|budget| {
        (usage.total * Decimal::from(100) / budget.monthly_budget)
            .floor()
            .to_u32()
            .unwrap_or(u32::MAX)
    });
    let stopped = budget.as_ref().is_some_and(|budget| budget.hard_stop)
        && totals.budget_stop.is_some_and(|stop| totals.points >= stop);
    Ok(BudgetStatus {
        month: usage.month.clone(),
        currency: plan.currency.clone(),
        monthly_budget: budget.as_ref().map(|budget| budget.monthly_budget),
        hard_stop: budget.is_some_and(|budget| budget.hard_stop),
        spent: usage.total,
        percent,
        notified,
        stopped,
    })
}

/// Sets the team's budget (or, `None`, lifts it) and evaluates it at once, so a
/// budget set below the spend tells and stops now, and a raised or lifted one lets
/// logging resume now. Answers the budget's status.
pub async fn set(
    store: &Store,
    plan: &PricePlan,
    mail: Option<Mail<'_>>,
    tenant: &Tenant,
    budget: Option<Budget>,
) -> Result<BudgetStatus> {
    match &budget {
        Some(budget) => {
            // The mark first: a budget the hourly run cannot find would never stop
            // or tell.
            store
                .kv
                .put(Item::new(mark_key(tenant)), Condition::None)
                .await?;
            store
                .kv
                .put(doc_item(budget_key(tenant), budget)?, Condition::None)
                .await?;
        }
        None => forget(store, tenant).await?,
    }
    let month = BillingMonth::of(store.now());
    let (usage, _) = evaluate(store, plan, mail, tenant, month, Retry::NewOnly).await?;
    status(store, plan, tenant, month, &usage).await
}

/// Whether an evaluation sends again the notices not yet delivered to every admin
/// (the hourly run), or only those it writes (a change of budget, which must not send
/// alongside a run retrying the same notice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Undelivered,
    NewOnly,
}

/// Evaluates the team's budget for `month`: forgets notices the spend is below, writes
/// and sends those of thresholds newly reached, and sets the month's hard stop.
/// Answers the month's usage and how many letters went out.
async fn evaluate(
    store: &Store,
    plan: &PricePlan,
    mail: Option<Mail<'_>>,
    tenant: &Tenant,
    month: BillingMonth,
    retry: Retry,
) -> Result<(MonthUsage, usize)> {
    let (budget, usage, notices) = futures::try_join!(
        async { Ok::<_, BudgetError>(get_doc::<Budget>(&*store.kv, &budget_key(tenant)).await?) },
        async { Ok(billing::usage(store, plan, tenant, month).await?) },
        notices(store, tenant, month),
    )?;
    let mut notices: BTreeMap<u8, Notice> = notices
        .into_iter()
        .map(|notice| (notice.threshold, notice))
        .collect();
    // Thresholds the spend is below now (the budget was raised or lifted) are
    // forgotten, so reaching them again tells again.
    let below: Vec<u8> = notices
        .keys()
        .copied()
        .filter(|&threshold| {
            budget
                .as_ref()
                .is_none_or(|budget| !budget.reached(usage.total, threshold))
        })
        .collect();
    for threshold in below {
        store
            .kv
            .delete(&notice_key(tenant, month, threshold), Condition::None)
            .await?;
        notices.remove(&threshold);
    }
    let Some(budget) = budget else {
        usage::set_budget_stop(store, tenant, month, None).await?;
        return Ok((usage, 0));
    };
    usage::set_budget_stop(
        store,
        tenant,
        month,
        budget
            .hard_stop
            .then(|| budget.stop_points(plan, &usage))
            .flatten(),
    )
    .await?;
    let mut sent = 0;
    // Highest first: thresholds reached together (a budget set below the spend, a
    // burst within an hour) make one letter, the highest's; the lower ones are
    // written as told by it.
    let mut told_by_higher = false;
    for threshold in THRESHOLDS.into_iter().rev() {
        if !budget.reached(usage.total, threshold) {
            continue;
        }
        let key = notice_key(tenant, month, threshold);
        let notice = match notices.remove(&threshold) {
            Some(notice) if !notice.done && retry == Retry::Undelivered => notice,
            Some(_) => continue,
            None => {
                let notice = Notice {
                    threshold,
                    budget: budget.monthly_budget,
                    spent: usage.total,
                    currency: usage.currency.clone(),
                    reached_at: store.now(),
                    delivered_to: Vec::new(),
                    done: told_by_higher,
                };
                told_by_higher = true;
                // Written before it is sent, and only once: whoever writes it sends it.
                match store
                    .kv
                    .put(doc_item(key.clone(), &notice)?, Condition::NotExists)
                    .await
                {
                    Ok(()) if notice.done => continue,
                    Ok(()) => notice,
                    Err(StoreError::ConditionFailed) => continue,
                    Err(err) => return Err(err.into()),
                }
            }
        };
        sent += deliver(store, mail, tenant, key, notice, &budget, &usage).await?;
    }
    Ok((usage, sent))
}

/// Sends a notice to the team's verified admins it has not reached yet and records
/// whom it reached; answers how many letters went out.
async fn deliver(
    store: &Store,
    mail: Option<Mail<'_>>,
    tenant: &Tenant,
    key: Key,
    mut notice: Notice,
    budget: &Budget,
    usage: &MonthUsage,
) -> Result<usize> {
    let Some(mail) = mail else {
        tracing::warn!(
            tenant = %tenant.id(),
            threshold = notice.threshold,
            "no mail service is configured: a budget notice waits for the next run that has one"
        );
        return Ok(0);
    };
    let (admins, team) =
        futures::try_join!(accounts::verified_admin_emails(store, tenant), async {
            Ok(accounts::team_name(store, tenant).await?)
        },)?;
    let team = team.unwrap_or_default();
    let spent = format!("{} {}", usage.total, usage.currency);
    let amount = format!("{} {}", budget.monthly_budget, usage.currency);
    let mut sent = 0;
    let mut undelivered = false;
    for admin in admins {
        if notice.delivered_to.iter().any(|to| to == admin.as_str()) {
            continue;
        }
        let letter = postman::budget_reached(
            admin.as_str(),
            postman::BudgetReached {
                team: &team,
                month: &usage.month,
                threshold: notice.threshold,
                spent: &spent,
                budget: &amount,
                hard_stop: budget.hard_stop,
            },
            mail.usage_page,
        );
        if mail.postman.deliver(letter).await {
            notice.delivered_to.push(admin.as_str().to_owned());
            sent += 1;
        } else {
            undelivered = true;
        }
    }
    notice.done = !undelivered;
    // Unless a change of budget forgot it meanwhile.
    match store
        .kv
        .put(doc_item(key, &notice)?, Condition::Exists)
        .await
    {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(sent),
        Err(err) => Err(err.into()),
    }
}

/// What the hourly run's budget step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Evaluated {
    pub teams: usize,
    pub letters: usize,
}

/// Evaluates every team with a budget for each of `months` (the month of the hour
/// just rolled up and, at a month's turn, the new one, whose stop starts then): the
/// hourly run's budget step. A team whose evaluation fails does not hold up the
/// others; the first failure is answered once all have been tried, and the next run
/// evaluates again (evaluating twice sends nothing twice).
pub async fn evaluate_marked(
    store: &Store,
    plan: &PricePlan,
    mail: Option<Mail<'_>>,
    months: &[BillingMonth],
) -> Result<Evaluated> {
    let mut query = Query::partition(MARKED);
    let mut tenants = Vec::new();
    loop {
        let page = store.kv.query(query.clone()).await?;
        tenants.extend(
            page.items
                .iter()
                .filter_map(|item| item.key.sk.parse::<TenantId>().ok()),
        );
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let outcomes: Vec<Result<usize>> = futures::stream::iter(tenants)
        .map(|tenant| async move {
            let tenant = Tenant::verified(tenant);
            let mut letters = 0;
            for &month in months {
                letters += evaluate(store, plan, mail, &tenant, month, Retry::Undelivered)
                    .await?
                    .1;
            }
            Ok(letters)
        })
        .buffer_unordered(crate::metering::TENANTS_AT_ONCE)
        .collect()
        .await;
    let mut evaluated = Evaluated::default();
    let mut first_failure = None;
    for outcome in outcomes {
        match outcome {
            Ok(letters) => {
                evaluated.teams += 1;
                evaluated.letters += letters;
            }
            Err(err) => {
                tracing::error!(error = %err, "could not evaluate a team's budget");
                first_failure.get_or_insert(err);
            }
        }
    }
    match first_failure {
        Some(err) => Err(err),
        None => Ok(evaluated),
    }
}

/// What the pages' banner says: the highest threshold of the budget reached this
/// month, as of the last evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Banner {
    pub threshold: u8,
    pub budget: Decimal,
    pub currency: String,
}

/// The banner for the team's pages this month, if a threshold is reached: one query
/// of the month's notices, not a usage computation.
pub async fn banner(
    store: &Store,
    tenant: &Tenant,
    now: OffsetDateTime,
) -> Result<Option<Banner>, StoreError> {
    let query =
        Query::partition(usage::partition(tenant)).prefix(notices_prefix(BillingMonth::of(now)));
    let notices: Vec<Notice> = query_docs(&*store.kv, query).await?;
    Ok(notices
        .into_iter()
        .max_by_key(|notice| notice.threshold)
        .map(|notice| Banner {
            threshold: notice.threshold,
            budget: notice.budget,
            currency: notice.currency,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_takes_a_plain_positive_amount_in_minor_units_and_nothing_else() {
        let plan = PricePlan::default();
        let parsed = Budget::parse(&plan, Some(" 25 "), true).unwrap().unwrap();
        assert_eq!(parsed.monthly_budget.to_string(), "25.00");
        assert!(parsed.hard_stop);
        assert_eq!(
            Budget::parse(&plan, Some("0.05"), false)
                .unwrap()
                .unwrap()
                .monthly_budget
                .to_string(),
            "0.05"
        );
        for refused in [
            "",
            "-1",
            "+1",
            "1e3",
            "0",
            "0.00",
            "1.234",
            "1.",
            ".5",
            "abc",
            "1,000",
            "1000000000.01",
            "99999999999999999999999999999999999999",
        ] {
            let err = Budget::parse(&plan, Some(refused), false).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidBudget, "{refused:?}");
        }
        assert_eq!(Budget::parse(&plan, None, false).unwrap(), None);
        let err = Budget::parse(&plan, None, true).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidBudget);
    }

    #[test]
    fn the_stop_allows_the_free_points_left_and_what_the_rest_of_the_budget_buys() {
        let plan = PricePlan::default();
        let budget = Budget::parse(&plan, Some("1.00"), true).unwrap().unwrap();
        let month = BillingMonth::parse("2026-11").unwrap();
        let usage = plan.price(month, &[], &[]);
        // $1 buys two million points at $0.50 a million, after ten million free.
        assert_eq!(budget.stop_points(&plan, &usage), Some(12_000_000));
        let mut spent = usage.clone();
        spent.points = 12_000_000;
        spent.total = Decimal::ONE;
        assert_eq!(budget.stop_points(&plan, &spent), Some(12_000_000));
        let free = PricePlan {
            per_million_points: Decimal::ZERO,
            ..PricePlan::default()
        };
        assert_eq!(budget.stop_points(&free, &usage), None);
    }
}
