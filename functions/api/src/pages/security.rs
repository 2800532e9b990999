//! What keeps the pages safe: the session cookie and the extractors that read it, the
//! signed double-submit CSRF check on every form that changes state, the Origin check,
//! and the headers every page carries.
//!
//! The session cookie is read only here, by the pages: the JSON API reads only
//! `Authorization: Bearer`, so a browser's cookie never authenticates a `/v1` call and
//! cannot be ridden into one from another site.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sextant_domain::accounts;
use sextant_domain::credentials::Caller;
use sextant_domain::credentials::{Credential, Plane, Role};
use sextant_domain::error::Class;
use sextant_edge::auth;
use sextant_edge::auth::csrf::CsrfKey;
use sextant_edge::state::AppState;

use super::PageError;

/// The cookies of a browser over plain HTTP, which can only be `sextant serve` on a
/// developer's machine.
const SESSION_COOKIE: &str = "sextant_session";
const CSRF_COOKIE: &str = "sextant_csrf";
/// Over HTTPS: the `__Host-` prefix makes the browser refuse these names unless they
/// were set by this very host, `Secure`, on `/` and without a `Domain`, so a sibling
/// subdomain can neither plant a session nor fix the CSRF value.
const SECURE_SESSION_COOKIE: &str = "__Host-sextant_session";
const SECURE_CSRF_COOKIE: &str = "__Host-sextant_csrf";

/// The session and CSRF cookie names for a request that came over HTTPS or not.
fn cookie_names(secure: bool) -> (&'static str, &'static str) {
    if secure {
        (SECURE_SESSION_COOKIE, SECURE_CSRF_COOKIE)
    } else {
        (SESSION_COOKIE, CSRF_COOKIE)
    }
}
/// The hidden field of every form that changes state.
pub const CSRF_FIELD: &str = "csrf";

/// The value of a cookie the request carries, from any of its `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// Whether the browser reached us over HTTPS: the configured public URL says so, or
/// the proxy in front (API Gateway, a load balancer) does.
fn over_https(state: &AppState, headers: &HeaderMap) -> bool {
    state
        .settings
        .public_url
        .as_ref()
        .is_some_and(|url| url.scheme() == "https")
        || headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: HttpOnly and on the whole site always, `Secure` over HTTPS.
fn set_cookie(
    name: &str,
    value: &str,
    same_site: &str,
    max_age: Option<i64>,
    secure: bool,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(secs) = max_age {
        cookie.push_str(&format!("; Max-Age={secs}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).expect("cookie values are base64url or JWTs")
}

/// The member a page is shown to.
#[derive(Debug, Clone)]
pub struct User {
    pub caller: Caller,
    pub team: String,
    /// The highest threshold of the team's budget its spend has reached this month,
    /// for every page's banner.
    pub budget_banner: Option<sextant_domain::budgets::Banner>,
}

impl User {
    /// A 403 page unless the member's role allows `role`'s actions.
    pub fn require(&self, role: Role) -> Result<(), PageError> {
        self.caller.require(role).map_err(PageError::from)
    }
}

/// What every page handler starts from: the state, the CSRF cookie in effect (made
/// now if the browser had none), and the signed-in member, if any.
#[derive(Debug, Clone)]
pub struct Page {
    pub state: AppState,
    pub user: Option<User>,
    /// The session cookie's token, so log-out can end the session itself.
    session: Option<String>,
    csrf_cookie: String,
    /// The CSRF cookie was made for this response and has to be set.
    set_csrf: bool,
    secure: bool,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let secure = over_https(state, &parts.headers);
        let (session_name, csrf_name) = cookie_names(secure);
        let existing = cookie(&parts.headers, csrf_name)
            .filter(|value| CsrfKey::is_cookie_value(value))
            .map(str::to_owned);
        let set_csrf = existing.is_none();
        let csrf_cookie = existing.unwrap_or_else(CsrfKey::new_cookie_value);
        let session = cookie(&parts.headers, session_name).map(str::to_owned);
        let user = match &session {
            Some(token) => signed_in(state, token).await?,
            None => None,
        };
        Ok(Self {
            state: state.clone(),
            user,
            session,
            csrf_cookie,
            set_csrf,
            secure,
        })
    }
}

/// The member a session token names; `None` for anything that is not a live session
/// token (an API key in the cookie does not sign anyone in).
async fn signed_in(state: &AppState, token: &str) -> Result<Option<User>, PageError> {
    let caller = match auth::authenticate(state, token, Plane::Control).await {
        Ok(caller) if matches!(caller.credential, Credential::Session { .. }) => caller,
        Ok(_) => return Ok(None),
        Err(err) if err.code().class() == Class::Unauthenticated => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    // Both at once, so the banner costs every page a query but no extra wait.
    let (team, budget_banner) = futures::try_join!(
        accounts::team_name(&state.store, &caller.tenant),
        sextant_domain::budgets::banner(&state.store, &caller.tenant, state.now()),
    )?;
    Ok(Some(User {
        caller,
        team: team.unwrap_or_default(),
        budget_banner,
    }))
}

impl Page {
    /// The hidden field value for the page's forms.
    pub fn csrf(&self) -> String {
        CsrfKey::from_keyring(&self.state.keyring).token_for(&self.csrf_cookie)
    }

    /// Starts a new CSRF cookie for this response (at sign-in and sign-out, so a
    /// value planted before does not outlive them); forms rendered after this use it.
    pub fn rotate_csrf(&mut self) {
        self.csrf_cookie = CsrfKey::new_cookie_value();
        self.set_csrf = true;
    }

    /// The signed-in member, or a redirect to the log-in page.
    pub fn require_user(&self) -> Result<&User, PageError> {
        self.user
            .as_ref()
            .ok_or_else(|| PageError::Redirect("/login".into()))
    }

    /// Adds the cookies this page owes the browser to a response.
    pub fn finish(&self, mut response: Response) -> Response {
        if self.set_csrf {
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(
                    cookie_names(self.secure).1,
                    &self.csrf_cookie,
                    "Strict",
                    None,
                    self.secure,
                ),
            );
        }
        response
    }

    /// Signs the browser in with a session token, for the session's lifetime.
    pub fn start_session(&self, response: &mut Response, token: &str) {
        let ttl = self.state.settings.session_ttl.whole_seconds();
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(
                cookie_names(self.secure).0,
                token,
                "Lax",
                Some(ttl),
                self.secure,
            ),
        );
    }

    /// Signs the browser out: the session's token is refused from now on (a copy of
    /// the cookie is worth nothing), and the cookie is emptied and expires at once.
    pub async fn end_session(&self, response: &mut Response) -> Result<(), PageError> {
        if let Some(token) = &self.session {
            accounts::end_session(&self.state.store, &self.state.keyring, token).await?;
        }
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(cookie_names(self.secure).0, "", "Lax", Some(0), self.secure),
        );
        Ok(())
    }
}

/// A page handler's signed-in member: the page, or a redirect to `/login`.
#[derive(Debug, Clone)]
pub struct SignedIn(pub Page, pub User);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let page = Page::from_request_parts(parts, state).await?;
        let user = page.require_user()?.clone();
        Ok(Self(page, user))
    }
}

/// The fields of a form that changes state, accepted only with a valid CSRF field
/// for the browser's CSRF cookie and without a foreign `Origin`. Anything else is a
/// 403 page and changes nothing.
#[derive(Debug)]
pub struct CsrfForm(pub Vec<(String, String)>);

impl CsrfForm {
    /// The first value of a field; empty when it is absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    }
}

impl FromRequest<AppState> for CsrfForm {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, PageError> {
        let refused = |why: &str| PageError::Status(StatusCode::FORBIDDEN, why.to_owned());
        if !same_origin(state, request.headers()) {
            return Err(refused(
                "This form was sent from another site, so it was refused.",
            ));
        }
        let csrf_name = cookie_names(over_https(state, request.headers())).1;
        let cookie_value = cookie(request.headers(), csrf_name).map(str::to_owned);
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| PageError::Status(rejection.status(), rejection.body_text()))?;
        let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body)
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        let form = Self(fields);
        let key = CsrfKey::from_keyring(&state.keyring);
        match cookie_value {
            Some(value) if key.verify(&value, form.get(CSRF_FIELD)) => Ok(form),
            _ => Err(refused(
                "The form's security token is missing or out of date. Reload the page and try again.",
            )),
        }
    }
}

/// Whether a request's `Origin`, when it has one, is this service: its public URL's
/// origin, or the host the request was addressed to. `Origin: null` is foreign.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(origin) = origin
        .to_str()
        .ok()
        .and_then(|text| url::Url::parse(text).ok())
        .map(|url| url.origin())
        .filter(url::Origin::is_tuple)
    else {
        return false;
    };
    if state
        .settings
        .public_url
        .as_ref()
        .is_some_and(|url| url.origin() == origin)
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    host.is_some_and(|host| {
        ["http", "https"].iter().any(|scheme| {
            url::Url::parse(&format!("{scheme}://{host}")).is_ok_and(|url| url.origin() == origin)
        })
    })
}

/// The Content-Security-Policy of every page: only our own scripts and styles, images
/// also from the blob store's presigned URLs (HTTPS, or this origin in local mode), no
/// framing, forms only back to us.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: https:; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers every page answer carries; a handler's own (a share page's stricter
/// `Referrer-Policy`, a static file's caching) are kept.
pub async fn headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let defaults = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, private"),
        ),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, value);
        }
    }
    response
}

/// A 303 to `to`: where a form that worked sends the browser.
pub fn see_other(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
