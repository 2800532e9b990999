//! The web pages: server-rendered HTML (maud, which escapes everything it is given),
//! a small stylesheet and a little JavaScript for live charts, all from the api
//! function. Pages call the domain in `sextant_domain` directly, scoped to the signed-in
//! member's tenant exactly as the JSON API is, and never the JSON API over HTTP.
//!
//! Routes:
//! - `/`, `/signup`, `/login`, `/logout`: landing, sign-up, log-in and out;
//! - `/projects`, `/projects/{project}`: projects and a project's run table;
//! - `/projects/{project}/workspace`: a chart per metric of the runs a filter keeps;
//!   `POST /projects/{project}/views` and `POST /projects/{project}/views/{name}/delete`:
//!   save and delete a named view of the project's workspace;
//! - `/runs/{run}` (with `/abort`, `/share`, `/artifacts/{path}`): a run;
//! - `/points?line=...`: the points the interactive charts draw (`points.rs`);
//! - `/compare?run=..&run=..`: runs side by side;
//! - `/settings/keys`: API keys; `/settings/members` (with `/invites`, and a member's
//!   `/role` and `/remove`): members and invites; `/join/{token}`: an invite's link;
//!   `/settings/team` (with `/name` and `/delete`): rename or delete the team;
//! - `/usage` (and `/usage/reports/{month}.csv|json`): usage;
//!   `POST /usage/budget`: an admin sets the monthly budget;
//! - `/verify`, `/forgot`, `/reset`: mailed links and a forgotten password;
//!   `/settings/account`: the member's name, address, password and sessions;
//! - `/r/{token}` (and `/r/{token}/points`): a shared run, logged out;
//! - `/static/{file}`: the script, the stylesheet, the charts' script and the vendored
//!   uPlot, cached for a year, versioned by content hash.

pub mod views;

mod account;
mod auth;
mod compare;
mod join;
mod keys;
mod layout;
mod members;
mod plots;
mod points;
mod projects;
mod runs;
mod security;
mod share;
mod team;
mod usage;
mod workspace;

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sextant_edge::error::ApiError;
use sextant_edge::state::AppState;
use tower_http::compression::CompressionLayer;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(auth::landing))
        .route("/signup", get(auth::signup_form).post(auth::signup))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/verify", get(account::verify_form).post(account::verify))
        .route("/forgot", get(account::forgot_form).post(account::forgot))
        .route("/reset", get(account::reset_form).post(account::reset))
        .route("/settings/account", get(account::page))
        .route("/settings/account/verify", post(account::resend))
        .route("/settings/account/name", post(account::rename))
        .route("/settings/account/password", post(account::change_password))
        .route(
            "/settings/account/sessions/end-others",
            post(account::end_other_sessions),
        )
        .route(
            "/settings/account/sessions/{id}/end",
            post(account::end_session),
        )
        .route("/projects", get(projects::list).post(projects::create))
        .route("/projects/{project}", get(projects::runs))
        .route("/projects/{project}/workspace", get(workspace::page))
        .route("/projects/{project}/views", post(views::save))
        .route(
            "/projects/{project}/views/{name}/delete",
            post(views::delete),
        )
        .route("/runs/{run}", get(runs::page))
        .route("/runs/{run}/abort", post(runs::abort))
        .route("/runs/{run}/share", post(runs::share))
        .route("/runs/{run}/artifacts/{*path}", get(runs::download))
        .route("/shares/{id}/revoke", post(runs::revoke_share))
        .route("/compare", get(compare::page))
        .route("/settings/keys", get(keys::page).post(keys::create))
        .route("/settings/keys/{id}/revoke", post(keys::revoke))
        .route("/settings/members", get(members::page))
        .route("/settings/members/invites", post(members::invite))
        .route(
            "/settings/members/invites/{id}/resend",
            post(members::resend),
        )
        .route(
            "/settings/members/invites/{id}/revoke",
            post(members::revoke_invite),
        )
        .route("/settings/members/{id}/role", post(members::change_role))
        .route(
            "/settings/members/{id}/remove",
            get(members::remove_form).post(members::remove),
        )
        .route("/join/{token}", get(join::form).post(join::join))
        .route("/settings/team", get(team::page))
        .route("/settings/team/name", post(team::rename))
        .route("/settings/team/delete", post(team::delete))
        .route("/usage", get(usage::page))
        .route("/usage/budget", post(usage::set_budget))
        .route("/usage/reports/{file}", get(usage::report))
        .route("/r/{token}", get(share::page))
        .route("/r/{token}/points", get(points::shared))
        .route("/points", get(points::team))
        .route("/static/{file}", get(static_file))
        .route_layer(middleware::map_response(security::headers))
        // A workspace reads hundreds of lines of points; JSON numbers shrink by half
        // or more gzipped. Behind API Gateway, lambda_http sends a body with a
        // `Content-Encoding` base64-encoded, as a binary one.
        .layer(CompressionLayer::new())
}

/// Why a page could not be shown: a redirect (to log in), or a status with a message
/// fit for the person reading it.
#[derive(Debug)]
pub enum PageError {
    Redirect(String),
    Status(StatusCode, String),
}

impl PageError {
    pub fn not_found() -> Self {
        Self::Status(StatusCode::NOT_FOUND, "There is nothing here.".into())
    }
}

/// Any error the API would answer, a domain module's included, shown as a page.
impl<E> From<E> for PageError
where
    ApiError: From<E>,
{
    fn from(err: E) -> Self {
        let err = ApiError::from(err);
        err.log();
        match err.status() {
            StatusCode::NOT_FOUND => Self::not_found(),
            status => Self::Status(status, err.message().to_owned()),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Redirect(to) => security::see_other(&to),
            PageError::Status(status, message) => {
                (status, layout::error_page(status, &message)).into_response()
            }
        }
    }
}

pub type PageResult<T = Response> = Result<T, PageError>;

/// A static file, served at `/static/{path}?v={hash of its content}`.
pub(crate) struct Asset {
    path: &'static str,
    body: &'static str,
    content_type: &'static str,
    version: OnceLock<String>,
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static APP_JS: Asset = Asset::new("app.js", include_str!("static/app.js"), JS);
static APP_CSS: Asset = Asset::new("app.css", include_str!("static/app.css"), CSS);
/// The interactive charts of the run, share and workspace pages.
pub(crate) static CHARTS_JS: Asset = Asset::new("charts.js", include_str!("static/charts.js"), JS);
/// uPlot 1.6.32 (MIT, `static/vendor/uplot/LICENSE`), vendored as published on npm:
/// the pages load nothing from another origin.
pub(crate) static UPLOT_JS: Asset = Asset::new(
    "uplot.js",
    include_str!("static/vendor/uplot/uPlot.iife.min.js"),
    JS,
);
pub(crate) static UPLOT_CSS: Asset = Asset::new(
    "uplot.css",
    include_str!("static/vendor/uplot/uPlot.min.css"),
    CSS,
);

static ASSETS: [&Asset; 5] = [&APP_JS, &APP_CSS, &CHARTS_JS, &UPLOT_JS, &UPLOT_CSS];

impl Asset {
    const fn new(path: &'static str, body: &'static str, content_type: &'static str) -> Self {
        Self {
            path,
            body,
            content_type,
            version: OnceLock::new(),
        }
    }

    fn version(&self) -> &str {
        self.version.get_or_init(|| {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(self.body.as_bytes())[..6])
        })
    }

    /// Its URL, which names its content's hash: a new file is a new URL.
    pub(crate) fn url(&self) -> String {
        format!("/static/{}?v={}", self.path, self.version())
    }
}

/// `GET /static/{file}`: cached for a year, since its URL changes with its content.
async fn static_file(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.path == file) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            asset.body,
        )
            .into_response(),
        None => PageError::not_found().into_response(),
    }
}

/// A number for a table cell: short, but never hiding its magnitude.
pub fn number(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "∞" } else { "-∞" }.into();
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-3..1e6).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// A path of `/`-separated segments with each segment percent-encoded, for links to
/// artifacts whose paths may hold anything but `/`.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            url::form_urlencoded::byte_serialize(segment.as_bytes())
                .collect::<String>()
                // form encoding writes spaces as '+', which a path keeps literally.
                .replace('+', "%20")
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A time as people read it in a table: `2026-11-05 13:04 UTC`.
pub fn when(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_keep_their_magnitude() {
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(1.0 / 3.0), "0.3333");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(1e-7), "1.000e-7");
        assert_eq!(number(12_345_678.0), "1.235e7");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn artifact_paths_are_encoded_segment_by_segment() {
        assert_eq!(encode_path("a/b c/d?e#f"), "a/b%20c/d%3Fe%23f");
        assert_eq!(encode_path("x+y/z"), "x%2By/z");
    }
}
