//! The console's live parts, by server-sent events: the jobs list's first
//! page (its rows and counts) and a job's page (its facts and output),
//! each from what the page showed.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_aws::logs::JobLogs;
use berth_aws::store::JobRecord;
use serde::Deserialize;

use super::{Console, JobsQuery, OUTPUT_LINES, counts, filters, jobs_page, pages};
use crate::view::JobView;
use crate::{Berth, CliError};

/// A job's output as it is read: each launch's title, where reading it
/// left off, and its first [`OUTPUT_LINES`] lines.
#[derive(Debug, Default)]
pub struct Follow {
    launches: Vec<(String, berth_aws::logs::Cursor, Vec<String>)>,
}

impl Follow {
    /// Reads what the launches of `record` wrote since the last read
    /// (`berth logs`'s sources and reader); whether anything is new.
    pub async fn read(
        &mut self,
        berth: &Berth,
        logs: &JobLogs,
        record: &JobRecord,
    ) -> Result<bool, CliError> {
        let mut changed = false;
        for launch in berth.launches(record).await {
            let title = launch.title();
            let k = match self.launches.iter().position(|(t, ..)| *t == title) {
                Some(k) => k,
                None => {
                    self.launches
                        .push((title, berth_aws::logs::Cursor::default(), Vec::new()));
                    changed = true;
                    self.launches.len() - 1
                }
            };
            let (_, cursor, lines) = &mut self.launches[k];
            if let Ok(source) = &launch.source
                && lines.len() < OUTPUT_LINES
            {
                let read = logs.read(source, cursor).await?;
                if !read.is_empty() {
                    changed = true;
                    lines.extend(read.into_iter().map(|l| l.line));
                    lines.truncate(OUTPUT_LINES);
                }
            }
        }
        Ok(changed)
    }

    /// How much the job page shows of it: a line for each launch's title
    /// and each line.
    pub fn shown(&self) -> usize {
        self.launches.iter().map(|(_, _, l)| l.len() + 1).sum()
    }

    /// Each launch's title and lines, oldest launch first.
    pub fn output(&self) -> Vec<(String, Vec<String>)> {
        self.launches
            .iter()
            .map(|(title, _, lines)| (title.clone(), lines.clone()))
            .collect()
    }
}

/// How often a live page looks for changes.
const LIVE_EVERY: Duration = Duration::from_secs(2);
/// How often, at most, the live jobs list counts the jobs again: every
/// 10 s, and no more often than every 60 times as long as the last count
/// took. A count reads the whole status index (on DynamoDB 0.5 read units
/// for each 4 KB of it), so a large table, whose count takes longer, is
/// counted less often.
const COUNT_EVERY: Duration = Duration::from_secs(10);
const COUNT_SPACING: u32 = 60;

/// The query of the jobs list's events: its filters and the rows it shows.
#[derive(Debug, Default, Deserialize)]
pub(super) struct JobsEventsQuery {
    #[serde(flatten)]
    jobs: JobsQuery,
    /// The shown rows' [`pages::signature`].
    #[serde(default)]
    sig: String,
}

/// The first page of the jobs list, live: `counts` (JSON: status to count)
/// at once and again after the rows change, spaced as [`COUNT_EVERY`]
/// says; `rows` (the table's rows, HTML) when the newest jobs change.
pub(super) async fn jobs_events(
    State(console): State<Console>,
    Query(query): Query<JobsEventsQuery>,
) -> Response {
    let JobsEventsQuery { mut jobs, sig } = query;
    jobs.after.clear();
    jobs.id.clear();
    if let Err(e) = filters(&jobs, crate::now_ms()) {
        return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
    }
    struct Live {
        sig: String,
        recount: bool,
        /// When the last count began, and how long after that the next may.
        counted: Option<(tokio::time::Instant, Duration)>,
        first: bool,
    }
    let live = Live {
        sig,
        recount: true,
        counted: None,
        first: true,
    };
    let berth = console.berth.clone();
    let stream = futures::stream::unfold(live, move |mut live| {
        let (berth, jobs) = (berth.clone(), jobs.clone());
        async move {
            loop {
                if !live.first {
                    tokio::time::sleep(LIVE_EVERY).await;
                }
                live.first = false;
                if live.recount
                    && live
                        .counted
                        .is_none_or(|(at, spacing)| at.elapsed() >= spacing)
                {
                    live.recount = false;
                    let began = tokio::time::Instant::now();
                    let counted = counts(&berth, &jobs).await;
                    live.counted = Some((began, COUNT_EVERY.max(began.elapsed() * COUNT_SPACING)));
                    let event = match counted {
                        Ok(counts) => {
                            let map: serde_json::Map<String, serde_json::Value> = counts
                                .into_iter()
                                .map(|(s, n)| (s.as_str().to_owned(), n.into()))
                                .collect();
                            Event::default()
                                .event("counts")
                                .data(serde_json::Value::Object(map).to_string())
                        }
                        Err(e) => Event::default().event("problem").data(e.to_string()),
                    };
                    return Some((Ok::<_, std::convert::Infallible>(event), live));
                }
                match jobs_page(&berth, &jobs).await {
                    Ok(page) => {
                        let sig = pages::signature(&page);
                        if sig != live.sig {
                            live.sig = sig;
                            live.recount = true;
                            let rows = pages::rows(&page).into_string();
                            return Some((Ok(Event::default().event("rows").data(rows)), live));
                        }
                    }
                    Err(e) => {
                        return Some((
                            Ok(Event::default().event("problem").data(e.to_string())),
                            live,
                        ));
                    }
                }
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What the job page shows when it asks for its events: its record's last
/// change and its output's lines and launches.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Shown {
    #[serde(default)]
    at: Option<i64>,
    #[serde(default)]
    lines: usize,
}

/// A job, live: `job` (its facts and attempts, HTML) when its record
/// changes, `output` (HTML) when its launches write, and `end` once it has
/// ended and all it wrote is sent; each from what the page showed.
pub(super) async fn job_events(
    State(console): State<Console>,
    Path(id): Path<String>,
    Query(shown): Query<Shown>,
) -> Response {
    struct Live {
        updated: Option<i64>,
        follow: Follow,
        /// The page's output lines (and launches), until the first read.
        shown_lines: Option<usize>,
        ended: bool,
        first: bool,
        /// Events read but not sent yet (one is sent at a time).
        queued: std::collections::VecDeque<Event>,
    }
    let live = Live {
        updated: shown.at,
        follow: Follow::default(),
        shown_lines: Some(shown.lines),
        ended: false,
        first: true,
        queued: std::collections::VecDeque::new(),
    };
    let stream = futures::stream::unfold(live, move |mut live| {
        let (console, id) = (console.clone(), id.clone());
        async move {
            loop {
                if let Some(event) = live.queued.pop_front() {
                    return Some((Ok::<_, std::convert::Infallible>(event), live));
                }
                if live.ended {
                    return None;
                }
                if !live.first {
                    tokio::time::sleep(LIVE_EVERY).await;
                }
                live.first = false;
                let record = match console.berth.store().get(&id).await {
                    Ok(Some(record)) => record,
                    Ok(None) => return None,
                    Err(e) => {
                        return Some((
                            Ok(Event::default().event("problem").data(e.to_string())),
                            live,
                        ));
                    }
                };
                let ended = record.status.is_final();
                if live.updated != record.updated_at {
                    live.updated = record.updated_at;
                    let view = JobView::of(&record, crate::now_ms());
                    let html = pages::job_facts(&view, ended).into_string();
                    live.queued
                        .push_back(Event::default().event("job").data(html));
                }
                let read = live
                    .follow
                    .read(&console.berth, &console.logs, &record)
                    .await;
                // Sent unless the page shows it already.
                let shown = live.shown_lines.take();
                let read = read.map(|changed| changed && shown != Some(live.follow.shown()));
                match read {
                    Ok(true) => {
                        let html = pages::job_output(&Ok(live.follow.output())).into_string();
                        live.queued
                            .push_back(Event::default().event("output").data(html));
                    }
                    Ok(false) => {}
                    Err(e) => live
                        .queued
                        .push_back(Event::default().event("problem").data(e.to_string())),
                }
                if ended {
                    live.ended = true;
                    live.queued
                        .push_back(Event::default().event("end").data("ended"));
                }
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
