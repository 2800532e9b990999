//! `/usage`: the team's usage and cost this month so far, its monthly budget (which
//! admins set here), and its past monthly reports as JSON or CSV (served here, under
//! the session cookie, rather than by the API, which takes only bearer credentials).

use axum::extract::Path;
use axum::http::StatusCode;
use maud::{Markup, html};
use rust_decimal::Decimal;
use sextant_domain::billing::{self, HOURS_PER_GB_MONTH, MonthUsage, PricePlan};
use sextant_domain::budgets::{self, Budget, BudgetStatus};
use sextant_domain::calendar::BillingMonth;
use sextant_domain::credentials::Role;
use sextant_domain::error::Error;
use sextant_edge::error;
use sextant_edge::http::PublicUrl;

use super::layout::{Section, csrf_field, respond};
use super::security::{CsrfForm, Page, SignedIn, User, see_other};
use super::{PageError, PageResult};
use crate::usage::report_response;

/// `1234567` as `1,234,567`.
pub(super) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The line items as the plan states its prices (per million points, per GB-month)
/// and how much of the month's free allowance is used; the JSON and CSV reports keep
/// the exact per-unit decimals for machines.
fn line_items(plan: &PricePlan, usage: &MonthUsage) -> Markup {
    let currency = &usage.currency;
    let gb_months = |gb_hours: Decimal| {
        (gb_hours / Decimal::from(HOURS_PER_GB_MONTH))
            .round_dp(6)
            .normalize()
    };
    html! {
        table.line-items {
            thead { tr { th { "Item" } th { "Used" } th { "Price" } th { "Free this month" } th { "Amount" } } }
            tbody {
                @for item in &usage.line_items {
                    @if item.unit == "point" {
                        tr #points-line {
                            td { "Logged points" }
                            td { (grouped(usage.points)) " points" }
                            td { (plan.per_million_points) " " (currency) " per million points" }
                            td { (item.free_allowance) " of " (grouped(plan.free_points)) " points" }
                            td { (item.amount) " " (currency) }
                        }
                    } @else {
                        tr #storage-line {
                            td { "Storage" }
                            td { (gb_months(usage.gb_hours)) " GB-months (" (usage.gb_hours.round_dp(3)) " GB-hours)" }
                            td { (plan.per_gb_month) " " (currency) " per GB-month" }
                            td { (gb_months(item.free_allowance)) " of " (plan.free_gb_months.normalize()) " GB-months" }
                            td { (item.amount) " " (currency) }
                        }
                    }
                }
            }
        }
    }
}

/// The budget section: where the spend stands against it and, for admins, the form
/// that sets it; `error` is why the form's last submission was refused.
fn budget_section(page: &Page, user: &User, budget: &BudgetStatus, error: Option<&str>) -> Markup {
    let currency = &budget.currency;
    html! {
        section #budget {
            h2 { "Monthly budget" }
            @match (&budget.monthly_budget, budget.percent) {
                (Some(amount), Some(percent)) => {
                    p #budget-summary {
                        (budget.spent) " " (currency) " of " (amount) " " (currency) " spent (" (percent) "%)."
                        @if budget.hard_stop { " Hard stop: log calls are refused once the budget is spent." }
                    }
                    @if budget.stopped {
                        p.error #budget-stopped { "The budget is spent: log calls are refused until it is raised or lifted, or the month ends." }
                    }
                }
                _ => { p.empty #budget-summary { "No budget is set. Admins are mailed at 50, 80 and 100% of one." } }
            }
            @if let Some(error) = error { p.error role="alert" #budget-error { (error) } }
            @if user.caller.require(Role::Admin).is_ok() {
                form #budget-form .inline method="post" action="/usage/budget" {
                    (csrf_field(&page.csrf()))
                    label { "Budget a month (" (currency) ", empty for none) "
                        input type="text" name="monthly_budget" inputmode="decimal" maxlength="20"
                            value=[budget.monthly_budget.map(|amount| amount.to_string())];
                    }
                    label { input type="checkbox" name="hard_stop" value="on" checked[budget.hard_stop]; " Hard stop at 100%" }
                    button type="submit" { "Save budget" }
                }
            }
        }
    }
}

/// `GET /usage`.
pub async fn page(SignedIn(page, user): SignedIn) -> PageResult {
    render(&page, &user, StatusCode::OK, None).await
}

/// `POST /usage/budget`: an admin sets the team's budget (an empty amount lifts it).
pub async fn set_budget(
    SignedIn(page, user): SignedIn,
    PublicUrl(base): PublicUrl,
    form: CsrfForm,
) -> PageResult {
    user.require(Role::Admin)?;
    let plan = &page.state.settings.plan;
    let amount = Some(form.get("monthly_budget").trim()).filter(|amount| !amount.is_empty());
    let usage_page = budgets::usage_page(&base);
    let set = match Budget::parse(plan, amount, form.get("hard_stop") == "on") {
        Ok(budget) => {
            page.state
                .set_budget(&user.caller.tenant, budget, &usage_page)
                .await
        }
        Err(err) => Err(err),
    }
    .map_err(Error::from);
    match set {
        Ok(_) => Ok(page.finish(see_other("/usage#budget"))),
        Err(err) if error::status(err.code()).is_client_error() => {
            render(&page, &user, error::status(err.code()), Some(err.message())).await
        }
        Err(err) => Err(err.into()),
    }
}

async fn render(
    page: &Page,
    user: &User,
    status: StatusCode,
    budget_error: Option<&str>,
) -> PageResult {
    let tenant = &user.caller.tenant;
    let plan = &page.state.settings.plan;
    let month = BillingMonth::of(page.state.now());
    let (usage, closed) = futures::try_join!(
        billing::usage(&page.state.store, plan, tenant, month),
        billing::closed_months(&page.state.store, tenant),
    )?;
    let budget = budgets::status(&page.state.store, plan, tenant, month, &usage).await?;
    let body = html! {
        h1 { "Usage and billing" }
        section #this-month {
            h2 { (usage.month) " so far" }
            dl.figures {
                dt { "Logged points" } dd #usage-points { (usage.points) }
                dt { "Storage" } dd #usage-gb-hours { (usage.gb_hours.round_dp(3)) " GB-hours" }
                dt { "Total" } dd #usage-total { (usage.total) " " (usage.currency) }
            }
            @if let Some(provisional) = &usage.provisional {
                p.muted #usage-provisional {
                    "Provisional: " (provisional.points) " points and "
                    (provisional.gb_hours.round_dp(3)) " GB-hours since " (super::when(provisional.since))
                    " come from the live counters; the hourly roll-up makes them final."
                }
            }
            (line_items(&page.state.settings.plan, &usage))
            p {
                "This month's draft report: "
                a href={ "/usage/reports/" (usage.month) ".json" } { "JSON" } " · "
                a href={ "/usage/reports/" (usage.month) ".csv" } { "CSV" }
            }
            @if !usage.days.is_empty() {
                h3 { "By day" }
                table.days {
                    thead { tr { th { "Day" } th { "Points" } th { "GB-hours" } th {} } }
                    tbody {
                        @for day in &usage.days {
                            tr {
                                td { (day.date) } td { (day.points) } td { (day.gb_hours.round_dp(3)) }
                                td { @if day.provisional { span.badge { "provisional" } } }
                            }
                        }
                    }
                }
            }
        }
        (budget_section(page, user, &budget, budget_error))
        section #reports {
            h2 { "Past reports" }
            @if closed.is_empty() {
                p.empty { "No month has closed yet." }
            } @else {
                ul.reports {
                    @for month in &closed {
                        li.report data-month=(month) {
                            (month) ": "
                            a href={ "/usage/reports/" (month) ".json" } { "JSON" } " · "
                            a href={ "/usage/reports/" (month) ".csv" } { "CSV" }
                        }
                    }
                }
            }
        }
    };
    Ok(respond(page, status, Section::Usage, "Usage", body))
}

/// `GET /usage/reports/{YYYY-MM}.csv` or `.json`: the month's report, closed or draft.
pub async fn report(SignedIn(page, user): SignedIn, Path(file): Path<String>) -> PageResult {
    let (month, format) = file.rsplit_once('.').ok_or_else(PageError::not_found)?;
    if !matches!(format, "csv" | "json") {
        return Err(PageError::not_found());
    }
    let month = BillingMonth::parse(month).map_err(|_| PageError::not_found())?;
    let report = billing::report(
        &page.state.store,
        &page.state.settings.plan,
        &user.caller.tenant,
        month,
    )
    .await?;
    Ok(report_response(report, Some(format))?)
}
