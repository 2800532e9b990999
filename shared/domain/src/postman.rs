//! Mail the service sends on a member's behalf: what each letter says, and its
//! delivery through the mail port, tried again when the service is busy. A letter that
//! cannot be delivered never undoes what asked for it (a sign-up, a reset request):
//! it is logged, and the member can ask for another.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use maud::{Markup, html};
use time::OffsetDateTime;

use sextant_storage::Mailer;
use sextant_storage::mail::Message;

/// Waits before the second and third tries: a throttled SES answers within a second.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];
/// What a delivery is taken to last before any was timed.
const FIRST_GUESS: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Postman {
    mailer: Arc<dyn Mailer>,
    /// How long recent deliveries took (an exponential average, in microseconds), so
    /// that an answer that sends nothing can take as long as one that sends.
    typical_micros: AtomicU64,
}

impl Postman {
    pub fn new(mailer: Arc<dyn Mailer>) -> Self {
        Self {
            mailer,
            typical_micros: AtomicU64::new(FIRST_GUESS.as_micros() as u64),
        }
    }

    /// Delivers `message`, trying again while the service is busy; answers whether it
    /// was handed over.
    pub async fn deliver(&self, message: Message) -> bool {
        let started = Instant::now();
        let mut delays = RETRY_DELAYS.iter();
        let delivered = loop {
            match self.mailer.send(&message).await {
                Ok(id) => {
                    tracing::info!(message = %id, "mail handed over");
                    break true;
                }
                Err(err) => match delays.next() {
                    Some(delay) if err.is_retryable() => tokio::time::sleep(*delay).await,
                    _ => {
                        tracing::warn!(error = %err, "mail not sent; the member can ask again");
                        break false;
                    }
                },
            }
        };
        let took = started.elapsed().as_micros() as u64;
        let typical = self.typical_micros.load(Ordering::Relaxed);
        self.typical_micros
            .store((typical * 7 + took) / 8, Ordering::Relaxed);
        delivered
    }

    /// Takes about as long as a delivery, for an answer that must not tell by its timing
    /// whether it sent a letter.
    pub async fn imitate_delivery(&self) {
        let typical = self.typical_micros.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_micros(typical)).await;
    }
}

/// A letter of `paragraphs` and, when there is one, a link to act on.
fn letter(
    to: &str,
    subject: String,
    paragraphs: &[String],
    link: Option<(&url::Url, &str)>,
) -> Message {
    let mut text = paragraphs.join("\n\n");
    if let Some((link, action)) = link {
        text.push_str(&format!("\n\n{action}: {link}"));
    }
    text.push('\n');
    let body: Markup = html! {
        (maud::DOCTYPE)
        html {
            body style="font-family: sans-serif; line-height: 1.5" {
                @for paragraph in paragraphs {
                    p { (paragraph) }
                }
                @if let Some((link, action)) = link {
                    p { a href=(link.as_str()) { (action) } }
                    p style="color: #666; font-size: 0.9em" {
                        "Or paste this address into your browser: " (link.as_str())
                    }
                }
            }
        }
    };
    Message {
        to: to.to_owned(),
        subject,
        text,
        html: body.into_string(),
    }
}

fn hours(duration: time::Duration) -> String {
    match duration.whole_hours() {
        1 => "an hour".to_owned(),
        n if n > 1 => format!("{n} hours"),
        _ => format!("{} minutes", duration.whole_minutes()),
    }
}

/// The link that proves `to` belongs to the member who signed up to `team` with it.
pub fn verify_email(
    to: &str,
    team: &str,
    link: &url::Url,
    held_until: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Message {
    let mut paragraphs = vec![format!(
        "Someone, hopefully you, signed up to Sextant as a member of the team \"{team}\" \
         with this address. Open the link below to confirm it is yours."
    )];
    if let Some(until) = held_until.filter(|until| *until > now) {
        paragraphs.push(format!(
            "Until you do, the address is kept for you for {}; after that another sign-up \
             may take it.",
            hours(until - now)
        ));
    }
    paragraphs.push("If it was not you, ignore this message.".to_owned());
    letter(
        to,
        format!("Confirm your address for {team} on Sextant"),
        &paragraphs,
        Some((link, "Confirm your address")),
    )
}

/// The link that sets a new password for the member `to` of `team`.
pub fn reset_password(
    to: &str,
    team: &str,
    link: &url::Url,
    expires_in: time::Duration,
) -> Message {
    let paragraphs = vec![
        format!(
            "Someone asked to reset the password of your Sextant account in the team \
             \"{team}\". The link below sets a new one; it works once, for {}.",
            hours(expires_in)
        ),
        "Setting a new password signs you out everywhere. If you did not ask, ignore \
         this message: your password stays as it is."
            .to_owned(),
    ];
    letter(
        to,
        format!("Reset your Sextant password ({team})"),
        &paragraphs,
        Some((link, "Set a new password")),
    )
}

/// What a budget letter reports: the team's month, its spend and budget (amounts
/// with their currency), and the threshold reached.
#[derive(Debug, Clone, Copy)]
pub struct BudgetReached<'a> {
    pub team: &'a str,
    pub month: &'a str,
    pub threshold: u8,
    pub spent: &'a str,
    pub budget: &'a str,
    pub hard_stop: bool,
}

/// Tells an admin that the team's spend this month has reached a threshold of its
/// budget; `usage_page` is the page that shows it (none when the service does not know
/// its public address).
pub fn budget_reached(
    to: &str,
    reached: BudgetReached<'_>,
    usage_page: Option<&url::Url>,
) -> Message {
    let BudgetReached {
        team,
        month,
        threshold,
        spent,
        budget,
        hard_stop,
    } = reached;
    let mut paragraphs = vec![format!(
        "The team \"{team}\" has spent {spent} on Sextant in {month} so far: {threshold}% \
         of its monthly budget of {budget}."
    )];
    paragraphs.push(match (threshold >= 100, hard_stop) {
        (true, true) => "The budget's hard stop is on: log calls are refused until an admin \
                         raises or lifts the budget, or the month ends."
            .to_owned(),
        (true, false) => "Logging goes on (the budget has no hard stop), and so does the \
                          spending."
            .to_owned(),
        (false, _) => "You are told once at 50, 80 and 100% of the budget each month.".to_owned(),
    });
    if usage_page.is_none() {
        paragraphs.push("The Usage page of Sextant shows the figures and the budget.".to_owned());
    }
    letter(
        to,
        format!("{team} has used {threshold}% of its Sextant budget for {month}"),
        &paragraphs,
        usage_page.map(|page| (page, "See the usage")),
    )
}

/// Invites `to` to join `team`, on behalf of the admin `inviter`, through `link`.
pub fn invite(
    to: &str,
    team: &str,
    inviter: &str,
    link: &url::Url,
    expires_in: time::Duration,
) -> Message {
    let days = expires_in.whole_days();
    let lasts = if days >= 2 {
        format!("{days} days")
    } else {
        hours(expires_in)
    };
    let paragraphs = vec![
        format!(
            "{inviter} invites you to join the team \"{team}\" on Sextant, where it tracks \
             its machine-learning experiments: runs, metrics and artifacts."
        ),
        format!(
            "The link below lets you choose a name and a password and join. It works once, \
             for {lasts}."
        ),
        "If you did not expect this, ignore this message: nothing happens until the link \
         is used."
            .to_owned(),
    ];
    letter(
        to,
        format!("{inviter} invites you to {team} on Sextant"),
        &paragraphs,
        Some((link, "Join the team")),
    )
}
