//! The read-only dashboard on `server.listen`: `GET /` (findings by
//! severity and status, filtered by `?severity=&status=&kind=`),
//! `GET /findings/{id}` (evidence, the cost chart, the proposed change and
//! its rollback, the change request, every decision and refusal, the audit
//! trail), `GET /findings/{id}/chart.svg`, `GET /scans`; with
//! authentication on, `GET`/`POST /login` and `POST /logout`.
//!
//! Pages are rendered on the server from embedded templates ([`view`]); the
//! one stylesheet is served from `/assets/dashboard.css`, so the policy
//! allows no inline style and no script at all. Every answer carries
//! [`SECURITY_HEADERS`]. Without authentication no cookie is ever set; with
//! it, exactly one ([`auth`]).

pub mod auth;
pub mod throttle;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

pub use auth::{DashboardAuth, MIN_TOKEN_CHARS, check_token};

use super::ServerApp;
use crate::detect::cost::CostConfig;
use crate::domain::FindingId;
use crate::store::{AuditLog, ChangeRequestStore, ScanStore, StoreError};

/// What the dashboard reads from the application: the store's aggregates
/// it shows, the cost model's settings (to re-score a chart as the scan
/// did), and its authentication (`None`: the dashboard is off, `404`).
pub trait Dashboard: Send + Sync {
    /// `None` when `server.dashboard = false`.
    fn dashboard_auth(&self) -> Option<&DashboardAuth>;
    fn scan_store(&self) -> &dyn ScanStore;
    fn change_request_store(&self) -> &dyn ChangeRequestStore;
    fn audit_log(&self) -> &dyn AuditLog;
    fn cost_config(&self) -> &CostConfig;
}

/// The policy of every dashboard answer: nothing but the embedded
/// stylesheet and images from this server (the chart is inline SVG), no
/// script, no framing, forms only back to this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Headers on every dashboard answer, redirects and errors included.
pub const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CACHE_CONTROL, "no-store"),
];

/// Largest login form accepted.
const MAX_LOGIN_BYTES: usize = 4 * 1024;
/// Scans listed on `/scans`.
const SCANS_SHOWN: u32 = 200;

const STYLESHEET: &str = include_str!("dashboard.css");

/// The dashboard's routes, to merge into the main router (never the health
/// listener's).
pub fn routes(app: Arc<dyn ServerApp>) -> Router<Arc<dyn ServerApp>> {
    let pages = Router::new()
        .route("/", get(overview))
        .route("/findings/{id}", get(finding))
        .route("/findings/{id}/chart.svg", get(chart_svg))
        .route("/scans", get(scans))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            require_session,
        ));
    let open = Router::new()
        .route(
            "/login",
            get(login_page)
                .post(login)
                .layer(DefaultBodyLimit::max(MAX_LOGIN_BYTES)),
        )
        .route("/assets/dashboard.css", get(stylesheet))
        .route_layer(middleware::from_fn_with_state(app, dashboard_on));
    pages
        .merge(open)
        .layer(middleware::from_fn(security_headers))
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// `404` for every dashboard route when the dashboard is off.
async fn dashboard_on(
    State(app): State<Arc<dyn ServerApp>>,
    request: Request,
    next: Next,
) -> Response {
    if app.dashboard_auth().is_none() {
        return not_found();
    }
    next.run(request).await
}

/// Whether the request is signed in, as an extension the pages read (to
/// show the logout button).
#[derive(Debug, Clone, Copy)]
struct SignedIn(bool);

/// The pages: `404` when the dashboard is off; with authentication on, a
/// request without a live session is sent to `/login` (`303`).
async fn require_session(
    State(app): State<Arc<dyn ServerApp>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = app.dashboard_auth() else {
        return not_found();
    };
    if auth.required() {
        let live = super::cookie(request.headers(), auth::SESSION_COOKIE)
            .is_some_and(|id| auth.session_valid(id, Instant::now()));
        if !live {
            return see_other("/login", None);
        }
    }
    request.extensions_mut().insert(SignedIn(auth.required()));
    next.run(request).await
}

fn see_other(location: &'static str, cookie: Option<String>) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static(location))],
    )
        .into_response();
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Renders `template` with `page` (and `chart`, markup or none).
fn render<T: Serialize>(
    status: StatusCode,
    template: &str,
    signed_in: bool,
    page: T,
    chart: Option<String>,
) -> Response {
    let env = match view::templates() {
        Ok(env) => env,
        Err(error) => {
            tracing::error!(%error, "the dashboard's templates do not compile");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
        }
    };
    let rendered = env.get_template(template).and_then(|t| {
        t.render(minijinja::context! {
            page => minijinja::Value::from(minijinja::value::Serde(page)),
            authenticated => signed_in,
            chart => chart.map(minijinja::Value::from_safe_string),
        })
    });
    match rendered {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, template, "cannot render a dashboard page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

/// A page that only says something (not found, bad filter, database down).
fn message(status: StatusCode, signed_in: bool, title: &str, text: &str) -> Response {
    let env = match view::templates() {
        Ok(env) => env,
        Err(_) => return (status, format!("{text}\n")).into_response(),
    };
    match env.get_template("message.html").and_then(|t| {
        t.render(
            minijinja::context! { title => title, message => text, authenticated => signed_in },
        )
    }) {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(_) => (status, format!("{text}\n")).into_response(),
    }
}

/// The database failed: logged, and a fixed page.
fn unavailable(signed_in: bool, error: &StoreError) -> Response {
    tracing::error!(%error, "the dashboard cannot read the database");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        signed_in,
        "Try again later",
        "Draco cannot read its database right now.",
    )
}

fn signed_in(request_extensions: &axum::http::Extensions) -> bool {
    request_extensions
        .get::<SignedIn>()
        .is_some_and(|SignedIn(yes)| *yes)
}

/// `GET /`.
async fn overview(
    State(app): State<Arc<dyn ServerApp>>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let signed_in = signed_in(request.extensions());
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let filters = match view::Filters::parse(&pairs) {
        Ok(filters) => filters,
        Err(why) => return message(StatusCode::BAD_REQUEST, signed_in, "Bad filter", &why),
    };
    let findings = match app.scan_store().findings().await {
        Ok(findings) => findings,
        Err(error) => return unavailable(signed_in, &error),
    };
    let mut change_requests: std::collections::HashMap<FindingId, _> =
        match app.change_request_store().change_requests().await {
            Ok(crs) => crs.into_iter().map(|cr| (cr.finding_id, cr)).collect(),
            Err(error) => return unavailable(signed_in, &error),
        };
    let rows: Vec<_> = findings
        .into_iter()
        .map(|f| {
            let cr = change_requests.remove(&f.id);
            (f, cr)
        })
        .collect();
    render(
        StatusCode::OK,
        "overview.html",
        signed_in,
        view::overview(&rows, filters),
        None,
    )
}

/// The finding's chart, re-scored from stored cost points as the scan
/// drew it for the change request; `None` when it has none (not a cost
/// finding, the points are gone) or it cannot be drawn (logged).
async fn chart_of(app: &dyn ServerApp, finding: &crate::domain::Finding) -> Option<String> {
    if !crate::chart::has_chart(finding.kind) {
        return None;
    }
    let store = app.scan_store();
    let last = match store.last_cost_day().await {
        Ok(Some(last)) => last,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(%error, "cannot read cost points for a chart");
            return None;
        }
    };
    let points = match store
        .cost_points_since(last - chrono::Duration::days(crate::chart::HISTORY_DAYS))
        .await
    {
        Ok(points) => points,
        Err(error) => {
            tracing::warn!(%error, "cannot read cost points for a chart");
            return None;
        }
    };
    let title = crate::domain::neutralise(&finding.title);
    match crate::chart::finding_chart(finding, &title, &points, app.cost_config()) {
        Ok(chart) => chart,
        Err(error) => {
            tracing::warn!(%error, "cannot draw a finding's chart");
            None
        }
    }
}

fn parse_id(raw: &str) -> Option<FindingId> {
    raw.parse().ok()
}

/// `GET /findings/{id}`.
async fn finding(
    State(app): State<Arc<dyn ServerApp>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let signed_in = signed_in(request.extensions());
    let nothing = || {
        message(
            StatusCode::NOT_FOUND,
            signed_in,
            "No such finding",
            "There is no finding with this id.",
        )
    };
    let Some(id) = parse_id(&id) else {
        return nothing();
    };
    let found = match app.scan_store().finding(id).await {
        Ok(Some(found)) => found,
        Ok(None) => return nothing(),
        Err(error) => return unavailable(signed_in, &error),
    };
    let crs = app.change_request_store();
    let (cr, proposal, audit) = match (
        crs.change_request_for_finding(id).await,
        crs.proposal(id).await,
        app.audit_log()
            .audit_events(Some(&format!("finding:{id}")))
            .await,
    ) {
        (Ok(cr), Ok(proposal), Ok(audit)) => (cr, proposal, audit),
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
            return unavailable(signed_in, &error);
        }
    };
    let chart = chart_of(&*app, &found.finding).await;
    let page = view::finding_page(
        &found,
        cr.as_ref(),
        proposal.as_ref(),
        &audit,
        chart.is_some(),
    );
    render(StatusCode::OK, "finding.html", signed_in, page, chart)
}

/// `GET /findings/{id}/chart.svg`: the same chart as a file.
async fn chart_svg(State(app): State<Arc<dyn ServerApp>>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return not_found();
    };
    let found = match app.scan_store().finding(id).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(error) => return unavailable(false, &error),
    };
    match chart_of(&*app, &found.finding).await {
        Some(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => not_found(),
    }
}

/// `GET /scans`.
async fn scans(State(app): State<Arc<dyn ServerApp>>, request: Request) -> Response {
    let signed_in = signed_in(request.extensions());
    match app.scan_store().scans(SCANS_SHOWN).await {
        Ok(scans) => render(
            StatusCode::OK,
            "scans.html",
            signed_in,
            view::scans_page(&scans),
            None,
        ),
        Err(error) => unavailable(signed_in, &error),
    }
}

/// `GET /assets/dashboard.css`: the one stylesheet, embedded.
async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
        .into_response()
}

/// Why the login form is shown again.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    None,
    WrongToken,
    /// Too many wrong tokens; the seconds until the address may try again.
    Throttled(u64),
}

fn login_form(status: StatusCode, refusal: Refusal) -> Response {
    let env = match view::templates() {
        Ok(env) => env,
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    };
    match env.get_template("login.html").and_then(|t| {
        let (refused, retry_minutes) = match refusal {
            Refusal::None => ("", 0),
            Refusal::WrongToken => ("wrong", 0),
            Refusal::Throttled(secs) => ("throttled", secs.div_ceil(60)),
        };
        t.render(minijinja::context! {
            refused => refused,
            retry_minutes => retry_minutes,
            authenticated => false,
        })
    }) {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render the login page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

/// `GET /login`: the form; with authentication off, back to `/`.
async fn login_page(State(app): State<Arc<dyn ServerApp>>) -> Response {
    match app.dashboard_auth() {
        Some(auth) if auth.required() => login_form(StatusCode::OK, Refusal::None),
        _ => see_other("/", None),
    }
}

/// `POST /login`: the token, compared in constant time; right, a new
/// session and its cookie, then `/`; wrong, `401` and the form again; from
/// an address that sent too many wrong ones lately ([`throttle`]), `429`
/// with `Retry-After` (seconds) before the token is even looked at.
async fn login(
    State(app): State<Arc<dyn ServerApp>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let Some(auth) = app.dashboard_auth().filter(|a| a.required()) else {
        return see_other("/", None);
    };
    let client = peer.map(|Extension(ConnectInfo(address))| address.ip());
    let now = Instant::now();
    if let Err(wait) = auth.throttle().check(client, now) {
        tracing::warn!(
            client = client.map(|ip| ip.to_string()),
            "dashboard login refused: too many wrong tokens from this address"
        );
        // Whole seconds, rounded up (RFC 9110 §10.2.3).
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = login_form(StatusCode::TOO_MANY_REQUESTS, Refusal::Throttled(secs));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !auth.token_matches(&token) {
        auth.throttle().failed(client, now);
        tracing::warn!("dashboard login refused: wrong token");
        return login_form(StatusCode::UNAUTHORIZED, Refusal::WrongToken);
    }
    auth.throttle().succeeded(client);
    match auth.open_session(Instant::now()) {
        Ok(id) => see_other("/", Some(auth.session_cookie(&id))),
        Err(error) => {
            tracing::error!(%error, "cannot draw a session id");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

/// `POST /logout`: the session ends and its cookie is cleared.
async fn logout(State(app): State<Arc<dyn ServerApp>>, headers: HeaderMap) -> Response {
    let Some(auth) = app.dashboard_auth().filter(|a| a.required()) else {
        return see_other("/", None);
    };
    if let Some(id) = super::cookie(&headers, auth::SESSION_COOKIE) {
        auth.close_session(id);
    }
    see_other("/login", Some(auth.cleared_cookie()))
}
