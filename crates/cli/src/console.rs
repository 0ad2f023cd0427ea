//! `berth console`: a web console of the stack, served on 127.0.0.1 by the
//! CLI with the caller's own AWS credentials (no new AWS resource, no new
//! IAM).
//!
//! Who may use it: the URL it prints carries a random token, as Jupyter's
//! does. A request with the token gets a cookie (`HttpOnly`,
//! `SameSite=Strict`) and is sent on to the same page without the token in
//! its address; every other request needs the cookie and is refused (403)
//! without it. The server listens on loopback only, answers only requests
//! whose `Host` is its own address (no DNS rebinding), refuses cross-site
//! requests (`Sec-Fetch-Site`), and takes a form only from its own
//! `Origin`. Cancel is the one action that writes.

pub mod cluster;
pub mod cost;
mod live;
mod pages;
pub mod simulate;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use berth_aws::logs::JobLogs;
use berth_aws::store::{JobRecord, JobSummary, PageOf};
use berth_core::{JobStatus, Route};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::view::JobView;
use crate::{Berth, CliError, spend};

/// The cookie that carries the token.
pub const COOKIE: &str = "berth_console";
/// Jobs on a page of the list.
pub const PAGE: usize = 50;
/// Output lines shown of each launch.
const OUTPUT_LINES: usize = 1_000;
const STYLE: &str = include_str!("console/style.css");
const SCRIPT: &str = include_str!("console/console.js");

/// A new token: 256 random bits, in hex.
pub fn token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// What the console's handlers share.
#[derive(Clone)]
struct Console {
    berth: Berth,
    logs: JobLogs,
    token: Arc<str>,
    /// The `Host` values it answers: its own address, by IP and by name.
    hosts: Arc<[String]>,
}

/// The console on `addr` (a loopback address), its token `token`.
pub fn router(berth: Berth, logs: JobLogs, addr: SocketAddr, token: &str) -> Router {
    let port = addr.port();
    let console = Console {
        berth,
        logs,
        token: token.into(),
        hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")].into(),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/jobs") }))
        .route("/jobs", get(jobs))
        .route("/jobs/events", get(live::jobs_events))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/events", get(live::job_events))
        .route("/jobs/{id}/cancel", get(cancel_form).post(cancel))
        .route("/cluster", get(cluster_page))
        .route("/cost", get(cost_page))
        .route("/simulate", get(simulate_page).post(simulate_upload))
        .route("/style.css", get(style))
        .route("/console.js", get(script))
        .layer(DefaultBodyLimit::max(MOST_UPLOAD))
        .layer(middleware::from_fn_with_state(console.clone(), guard))
        .with_state(console)
}

/// Serves the console on `listener` (bound to loopback) until the process
/// ends.
pub async fn serve(
    berth: Berth,
    logs: JobLogs,
    listener: tokio::net::TcpListener,
    token: &str,
) -> Result<(), CliError> {
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("console: {e}")))?;
    if !addr.ip().is_loopback() {
        return Err(CliError::Input(format!(
            "the console listens on loopback only, not {addr}"
        )));
    }
    axum::serve(listener, router(berth, logs, addr, token))
        .await
        .map_err(|e| CliError::Failed(format!("console: {e}")))
}

/// The URL to open: the console's jobs, with its token.
pub fn url(addr: SocketAddr, token: &str) -> String {
    format!("http://{addr}/jobs?token={token}")
}

/// Lets a request through only as the module's documentation says.
async fn guard(State(console): State<Console>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = header_str(headers, header::HOST);
    if !host.is_some_and(|h| console.hosts.iter().any(|own| own == h)) {
        return refuse("this console answers only at its own address");
    }
    if let Some(site) = header_str(headers, "sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return refuse("cross-site requests are refused");
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let origin = header_str(headers, header::ORIGIN);
        if !origin.is_some_and(|o| console.hosts.iter().any(|h| o == format!("http://{h}"))) {
            return refuse("a form is taken only from this console's own pages");
        }
    }
    let query = request.uri().query().unwrap_or("");
    let given = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="));
    if let Some(given) = given {
        if !same(given, &console.token) {
            return refuse("the token is not this console's");
        }
        // The token goes into the cookie, and out of the address.
        let rest: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.starts_with("token=") && !pair.is_empty())
            .collect();
        let path = request.uri().path();
        let to = if rest.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", rest.join("&"))
        };
        let cookie = format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            console.token
        );
        let mut response = Redirect::to(&to).into_response();
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        return response;
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_owned)
        });
    if !cookie.is_some_and(|c| same(&c, &console.token)) {
        return refuse(
            "open the console with the URL `berth console` printed (it carries the token)",
        );
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    // Not `no-referrer`: under it a browser sends a form's `Origin` as `null`.
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether `given` is the token, in time that does not tell how much of it
/// matched.
fn same(given: &str, token: &str) -> bool {
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

fn refuse(why: &str) -> Response {
    (StatusCode::FORBIDDEN, pages::refused(why)).into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

/// The jobs list's filters and place, as its URL carries them.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
pub struct JobsQuery {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub definition: String,
    #[serde(default)]
    pub route: String,
    /// `KEY=VALUE`: jobs with that tag.
    #[serde(default)]
    pub tag: String,
    /// Changed at or after / at or before: as `berth cost --since` reads
    /// them (7d, 12h, a date, a time).
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    /// A job id to find.
    #[serde(default)]
    pub id: String,
    /// Where the page begins: the last page's end ([`Cursor`]).
    #[serde(default)]
    pub after: String,
}

impl JobsQuery {
    /// The query's filters, without its place, for a URL.
    pub fn filters(&self) -> Vec<(&'static str, &str)> {
        [
            ("status", &self.status),
            ("definition", &self.definition),
            ("route", &self.route),
            ("tag", &self.tag),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, v.as_str()))
        .collect()
    }
}

/// Where a page ends: the time of its last job's last change (ms) and the
/// jobs of the page changed at that very time, which the next page skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at_ms: i64,
    pub seen: Vec<String>,
}

impl Cursor {
    /// `1700000000000.id1/id2`: a job id holds letters, digits, `_`, `-`
    /// and an array child's `:` (berth-core's job id grammar), never `/`.
    pub fn parse(s: &str) -> Option<Self> {
        let (at, seen) = s.split_once('.').unwrap_or((s, ""));
        Some(Self {
            at_ms: at.parse().ok()?,
            seen: seen
                .split('/')
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    pub fn encode(&self) -> String {
        format!("{}.{}", self.at_ms, self.seen.join("/"))
    }

    /// The cursor past `jobs` (newest first, each after `from`), `None`
    /// when there are none.
    fn past(from: Option<&Cursor>, jobs: &[JobSummary]) -> Option<Cursor> {
        let at_ms = jobs.last()?.updated_at.unwrap_or_default();
        let mut seen: Vec<String> = from
            .filter(|c| c.at_ms == at_ms)
            .map(|c| c.seen.clone())
            .unwrap_or_default();
        seen.extend(
            jobs.iter()
                .filter(|j| j.updated_at == Some(at_ms))
                .map(|j| j.job_id.clone()),
        );
        Some(Cursor { at_ms, seen })
    }
}

/// One page of the jobs list: newest change first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobsPage {
    pub jobs: Vec<JobSummary>,
    /// Where the next page begins; `None` on the last page.
    pub next: Option<Cursor>,
    /// With a tag filter: the jobs read to find these, and whether the
    /// search stopped at [`TAG_SEARCH`] before the page filled.
    pub examined: usize,
    pub stopped: bool,
}

/// The most jobs one page of a tag search reads (by key, since the status
/// index does not carry tags) before it stops and offers to go on.
pub const TAG_SEARCH: usize = 1_000;

fn parse_filter<T>(
    what: &str,
    s: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    parse(s).map(Some).ok_or_else(|| format!("no {what} `{s}`"))
}

/// The filters of `query`, as the store reads them, and the statuses.
struct Filters<'q> {
    statuses: Vec<JobStatus>,
    of: PageOf<'q>,
    tag: Option<(&'q str, &'q str)>,
}

fn filters(query: &JobsQuery, now_ms: i64) -> Result<Filters<'_>, CliError> {
    let status =
        parse_filter("status", &query.status, JobStatus::parse).map_err(CliError::Input)?;
    let route = parse_filter("route", &query.route, Route::parse).map_err(CliError::Input)?;
    let time = |s: &str| -> Result<Option<i64>, CliError> {
        match s.trim() {
            "" => Ok(None),
            s => spend::parse_time(s, now_ms).map(Some),
        }
    };
    let (since_ms, until_ms) = (time(&query.since)?, time(&query.until)?);
    if let (Some(since), Some(until)) = (since_ms, until_ms)
        && since > until
    {
        return Err(CliError::Input(format!(
            "`since` ({}) is after `until` ({})",
            query.since, query.until
        )));
    }
    let tag = match query.tag.trim() {
        "" => None,
        t => Some(
            t.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| CliError::Input(format!("tag `{t}`: give it as KEY=VALUE")))?,
        ),
    };
    Ok(Filters {
        statuses: status.map_or_else(|| JobStatus::ALL.to_vec(), |s| vec![s]),
        of: PageOf {
            at_or_before_ms: until_ms,
            since_ms,
            definition: Some(query.definition.as_str()).filter(|d| !d.is_empty()),
            route,
        },
        tag,
    })
}

/// The next `n` jobs `filters` describe after `cursor`, newest first
/// (one query per status, all at once, each reading about `n`), and
/// whether there are more.
async fn next_jobs(
    berth: &Berth,
    filters: &Filters<'_>,
    cursor: Option<&Cursor>,
    n: usize,
) -> Result<(Vec<JobSummary>, bool), CliError> {
    let seen = cursor.map_or(0, |c| c.seen.len());
    let of = PageOf {
        at_or_before_ms: match (cursor.map(|c| c.at_ms), filters.of.at_or_before_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        ..filters.of
    };
    let store = berth.store();
    // One query per status, all at once.
    let pages = futures::future::try_join_all(
        filters
            .statuses
            .iter()
            .map(|status| store.page(*status, of, n + seen + 1)),
    )
    .await?;
    let mut jobs: Vec<JobSummary> = pages.into_iter().flatten().collect();
    if let Some(c) = cursor {
        jobs.retain(|j| !(j.updated_at == Some(c.at_ms) && c.seen.contains(&j.job_id)));
    }
    jobs.sort_by(|a, b| {
        b.updated_at
            .cmp(&a.updated_at)
            .then_with(|| a.job_id.cmp(&b.job_id))
    });
    let more = jobs.len() > n;
    jobs.truncate(n);
    Ok((jobs, more))
}

/// The page of jobs `query` asks for, through the store's status index.
/// With a tag filter, jobs are read in chunks and their tags by key, until
/// the page fills or [`TAG_SEARCH`] jobs have been read.
pub async fn jobs_page(berth: &Berth, query: &JobsQuery) -> Result<JobsPage, CliError> {
    let filters = filters(query, crate::now_ms())?;
    let mut cursor = match query.after.as_str() {
        "" => None,
        s => Some(Cursor::parse(s).ok_or_else(|| CliError::Input(format!("no page `{s}`")))?),
    };
    let store = berth.store();
    let mut page = JobsPage::default();
    let Some((key, value)) = filters.tag else {
        let (jobs, more) = next_jobs(berth, &filters, cursor.as_ref(), PAGE).await?;
        page.next = if more {
            Cursor::past(cursor.as_ref(), &jobs)
        } else {
            None
        };
        page.jobs = jobs;
        return with_costs(berth, page).await;
    };
    loop {
        let chunk = (4 * PAGE).min(TAG_SEARCH - page.examined);
        let (jobs, more) = next_jobs(berth, &filters, cursor.as_ref(), chunk).await?;
        let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
        let tags = store.tags_of(&ids).await?;
        let wanted = PAGE - page.jobs.len();
        // Up to and with the job that fills the page, or the whole chunk.
        let mut took = 0;
        let mut matched = Vec::new();
        for j in &jobs {
            took += 1;
            if tags
                .get(&j.job_id)
                .and_then(|t| t.get(key))
                .is_some_and(|v| v == value)
            {
                matched.push(j.clone());
                if matched.len() == wanted {
                    break;
                }
            }
        }
        page.examined += took;
        let left = more || took < jobs.len();
        cursor = Cursor::past(cursor.as_ref(), &jobs[..took]).or(cursor);
        page.jobs.extend(matched);
        if !left {
            page.next = None;
            break;
        }
        if page.jobs.len() == PAGE || page.examined >= TAG_SEARCH {
            page.stopped = page.jobs.len() < PAGE;
            page.next = cursor;
            break;
        }
    }
    with_costs(berth, page).await
}

/// `page` with each job's cost so far.
async fn with_costs(berth: &Berth, mut page: JobsPage) -> Result<JobsPage, CliError> {
    let ids: Vec<&str> = page.jobs.iter().map(|j| j.job_id.as_str()).collect();
    let costs = berth.store().costs_of(&ids).await?;
    for j in &mut page.jobs {
        j.cost_usd = costs.get(&j.job_id).copied();
    }
    Ok(page)
}

/// How many jobs of each status the filters of `query` describe (its tag
/// and place aside): one counting query per status, all at once.
pub async fn counts(berth: &Berth, query: &JobsQuery) -> Result<Vec<(JobStatus, u64)>, CliError> {
    let filters = filters(query, crate::now_ms())?;
    let store = berth.store();
    let counts = futures::future::try_join_all(
        JobStatus::ALL
            .iter()
            .map(|status| store.count(*status, filters.of)),
    )
    .await?;
    Ok(JobStatus::ALL.into_iter().zip(counts).collect())
}

async fn jobs(State(console): State<Console>, Query(query): Query<JobsQuery>) -> Response {
    if !query.id.is_empty() {
        let id = query.id.trim();
        return match console.berth.store().get(id).await {
            Ok(Some(_)) => {
                Redirect::to(&format!("/jobs/{}", pages::path_segment(id))).into_response()
            }
            Ok(None) => (
                StatusCode::NOT_FOUND,
                pages::jobs(
                    &query,
                    &JobsPage::default(),
                    Some(&format!("no job `{id}`")),
                ),
            )
                .into_response(),
            Err(e) => failed(&e.to_string()),
        };
    }
    match jobs_page(&console.berth, &query).await {
        Ok(page) => pages::jobs(&query, &page, None).into_response(),
        Err(CliError::Input(why)) => (
            StatusCode::BAD_REQUEST,
            pages::jobs(&query, &JobsPage::default(), Some(&why)),
        )
            .into_response(),
        Err(e) => failed(&e.to_string()),
    }
}

fn failed(why: &str) -> Response {
    (StatusCode::BAD_GATEWAY, pages::failed(why)).into_response()
}

/// The output so far of the job `record` holds, launch by launch (each
/// launch's title and its first [`OUTPUT_LINES`] lines).
pub async fn output(
    berth: &Berth,
    logs: &JobLogs,
    record: &JobRecord,
) -> Result<Vec<(String, Vec<String>)>, CliError> {
    let mut follow = live::Follow::default();
    follow.read(berth, logs, record).await?;
    Ok(follow.output())
}

async fn job(State(console): State<Console>, Path(id): Path<String>) -> Response {
    let record = match console.berth.store().get(&id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                pages::failed(&format!("no job `{id}`")),
            )
                .into_response();
        }
        Err(e) => return failed(&e.to_string()),
    };
    let view = JobView::of(&record, crate::now_ms());
    let output = output(&console.berth, &console.logs, &record)
        .await
        .map_err(|e| e.to_string());
    pages::job(&view, record.updated_at, record.status.is_final(), &output).into_response()
}

async fn cluster_page(State(console): State<Console>) -> Response {
    match cluster::read(&console.berth).await {
        Ok(view) => pages::cluster(&view).into_response(),
        Err(e) => failed(&e.to_string()),
    }
}

async fn cost_page(
    State(console): State<Console>,
    Query(query): Query<cost::CostQuery>,
) -> Response {
    match cost::read(&console.berth, &query).await {
        Ok(view) => pages::cost(&query, Ok(&view)).into_response(),
        Err(CliError::Input(why)) => {
            (StatusCode::BAD_REQUEST, pages::cost(&query, Err(&why))).into_response()
        }
        Err(e) => failed(&e.to_string()),
    }
}

/// The simulate view: the form alone, or with a query, the simulator's
/// answer for a built-in trace.
async fn simulate_page(RawQuery(query): RawQuery) -> Response {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return pages::simulate(&simulate::Asked::new_form(), None).into_response();
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap_or_default();
    let asked = simulate::Asked::from_pairs(pairs);
    simulated(asked, None).await
}

/// The most a trace uploaded to the simulate view may weigh.
const MOST_UPLOAD: usize = 8 << 20;

/// The simulate view's form with a CSV trace.
async fn simulate_upload(mut form: Multipart) -> Response {
    let mut pairs = Vec::new();
    let mut csv = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                if name == "csv" {
                    let file = field
                        .file_name()
                        .and_then(|f| {
                            f.rsplit_once('.')
                                .map(|(stem, _)| stem.to_owned())
                                .or(Some(f.to_owned()))
                        })
                        .filter(|f| !f.is_empty())
                        .unwrap_or_else(|| "uploaded".into());
                    match field.bytes().await {
                        Ok(bytes) if !bytes.is_empty() => csv = Some((file, bytes.to_vec())),
                        Ok(_) => {}
                        Err(e) => return bad_form(&e.to_string()),
                    }
                } else {
                    match field.text().await {
                        Ok(text) => pairs.push((name, text)),
                        Err(e) => return bad_form(&e.to_string()),
                    }
                }
            }
            Ok(None) => break,
            Err(e) => return bad_form(&e.to_string()),
        }
    }
    let asked = simulate::Asked::from_pairs(pairs);
    if csv.is_none() {
        return bad_form("choose a CSV file to upload, or run a built-in trace");
    }
    simulated(asked, csv).await
}

fn bad_form(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        pages::simulate(&simulate::Asked::new_form(), Some(&Err(why.to_owned()))),
    )
        .into_response()
}

/// The simulate view with the simulator's answer (run off the async
/// workers: seconds of work).
async fn simulated(asked: simulate::Asked, csv: Option<(String, Vec<u8>)>) -> Response {
    let form = asked.clone();
    let ran = tokio::task::spawn_blocking(move || {
        simulate::run(
            &asked,
            csv.as_ref().map(|(n, b)| (n.as_str(), b.as_slice())),
        )
    })
    .await;
    match ran {
        Ok(Ok(ran)) => pages::simulate(&form, Some(&Ok(ran))).into_response(),
        Ok(Err(e)) => (
            StatusCode::BAD_REQUEST,
            pages::simulate(&form, Some(&Err(e.to_string()))),
        )
            .into_response(),
        Err(e) => failed(&format!("the simulator stopped: {e}")),
    }
}

async fn cancel_form(State(console): State<Console>, Path(id): Path<String>) -> Response {
    match console.berth.store().get(&id).await {
        Ok(Some(record)) if !record.status.is_final() => {
            pages::cancel(&id, record.status.as_str()).into_response()
        }
        Ok(Some(_)) => Redirect::to(&format!("/jobs/{}", pages::path_segment(&id))).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            pages::failed(&format!("no job `{id}`")),
        )
            .into_response(),
        Err(e) => failed(&e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct Confirm {
    #[serde(default)]
    confirm: String,
}

async fn cancel(
    State(console): State<Console>,
    Path(id): Path<String>,
    Form(form): Form<Confirm>,
) -> Response {
    if form.confirm != "yes" {
        return (
            StatusCode::BAD_REQUEST,
            pages::failed("cancel needs its confirmation"),
        )
            .into_response();
    }
    match console
        .berth
        .cancel(&id, Some("cancelled from berth console"))
        .await
    {
        Ok(_) => Redirect::to(&format!("/jobs/{}", pages::path_segment(&id))).into_response(),
        Err(CliError::Failed(why)) if why.starts_with("no job") => {
            (StatusCode::NOT_FOUND, pages::failed(&why)).into_response()
        }
        Err(e) => failed(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        let c = Cursor {
            at_ms: 1_700_000_000_123,
            seen: vec!["a.b".into(), "c".into()],
        };
        assert_eq!(Cursor::parse(&c.encode()), Some(c));
        assert_eq!(
            Cursor::parse("5"),
            Some(Cursor {
                at_ms: 5,
                seen: Vec::new()
            })
        );
        assert_eq!(Cursor::parse("x.a"), None);
    }

    #[test]
    fn the_token_is_long_random_and_compared_whole() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a[..63], &a));
        assert!(!same(&b, &a));
    }
}
