//! The console's pages, as maud templates (checked at compile time; every
//! value escaped). No script: links and forms only, so that every page
//! works from the keyboard and reads in order to a screen reader.

use maud::{DOCTYPE, Markup, html};

use super::cluster::ClusterView;
use super::{JobsPage, JobsQuery};
use crate::view::JobView;
use berth_core::capacity::InstanceStatus;
use berth_core::{JobStatus, Route};

/// `id` as one segment of a path: letters, digits, `_`, `-`, `:` and `.`
/// as they are, any other byte percent-encoded.
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `value` for a URL's query string.
fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn layout(title: &str, current: &str, body: Markup) -> Markup {
    layout_with_script(title, current, body, false)
}

/// [`layout`], with the console's script when `script` (live pages).
fn layout_with_script(title: &str, current: &str, body: Markup, script: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · berth console" }
                link rel="stylesheet" href="/style.css";
                @if script { script src="/console.js" defer {} }
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header {
                    nav aria-label="berth console" {
                        span.brand { "berth" }
                        a href="/jobs" aria-current=[(current == "jobs").then_some("page")] { "Jobs" }
                        a href="/cluster" aria-current=[(current == "cluster").then_some("page")] { "Cluster" }
                        a href="/cost" aria-current=[(current == "cost").then_some("page")] { "Cost" }
                        a href="/simulate" aria-current=[(current == "simulate").then_some("page")] { "Simulate" }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A refused request's page.
pub fn refused(why: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Refused · berth console" } }
            body { main { h1 { "Refused" } p { (why) } } }
        }
    }
}

/// A page that says what went wrong.
pub fn failed(why: &str) -> Markup {
    layout(
        "Not shown",
        "",
        html! { p role="alert" { (why) } p { a href="/jobs" { "Back to the jobs" } } },
    )
}

fn status_class(status: &str) -> &'static str {
    match status {
        "SUCCEEDED" => "ok",
        "FAILED" | "TIMED_OUT" | "REJECTED" => "bad",
        "CANCELLED" => "off",
        _ => "live",
    }
}

/// A time to the second, for a table: `2026-12-05 11:00:26`, UTC.
fn short_time(ms: i64) -> String {
    crate::view::iso(ms).map_or_else(String::new, |t| short(&t))
}

/// An ISO 8601 time (UTC) to the second, for a table.
fn short(iso: &str) -> String {
    iso.replace('T', " ").chars().take(19).collect()
}

/// A table's head: a column header for each of `columns`.
fn head(columns: &[&str]) -> Markup {
    html! { thead { tr { @for c in columns { th scope="col" { (c) } } } } }
}

fn money(usd: Option<f64>) -> String {
    usd.map_or_else(|| "-".to_owned(), |c| format!("${c:.6}"))
}

/// `path?query` with `pairs` encoded.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return path.to_owned();
    }
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", query_value(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// The jobs list with `filters`, its status `status`.
fn status_link(filters: &[(&str, &str)], status: JobStatus) -> String {
    let mut pairs: Vec<(&str, &str)> = filters
        .iter()
        .filter(|(k, _)| *k != "status")
        .copied()
        .collect();
    pairs.push(("status", status.as_str()));
    with_query("/jobs", &pairs)
}

/// A fingerprint of a page's rows: what the live list compares to tell a
/// change.
pub fn signature(page: &JobsPage) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for j in &page.jobs {
        (
            &j.job_id,
            j.updated_at,
            j.status.as_str(),
            j.cost_usd.map(f64::to_bits),
        )
            .hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// The rows of a page of jobs (the live list swaps them in).
pub fn rows(page: &JobsPage) -> Markup {
    html! {
        @for j in &page.jobs {
            tr {
                th scope="row" { a href={ "/jobs/" (path_segment(&j.job_id)) } { (j.job_id) } }
                td { span class={ "status " (status_class(j.status.as_str())) } { (j.status.as_str()) } }
                td { (j.definition.as_deref().unwrap_or("-")) }
                td { (j.route.map_or("-", |r| r.as_str())) }
                td.num { (j.attempts) }
                td.num { (money(j.cost_usd)) }
                td.time { (j.updated_at.map(short_time).unwrap_or_default()) }
                td.reason { (crate::view::shown_reason(j.status, j.reason.as_deref()).unwrap_or("")) }
            }
        }
    }
}

/// The jobs list: its filters, counts by status, a page of jobs, the link
/// to the next. The first page is live (its rows and counts follow the
/// table, by server-sent events).
pub fn jobs(query: &JobsQuery, page: &JobsPage, problem: Option<&str>) -> Markup {
    let filters = query.filters();
    let next = page.next.as_ref().map(|cursor| {
        let encoded = cursor.encode();
        let mut pairs = filters.clone();
        pairs.push(("after", &encoded));
        with_query("/jobs", &pairs)
    });
    let live = query.after.is_empty() && problem.is_none();
    let mut events = filters.clone();
    let sig = signature(page);
    events.push(("sig", &sig));
    let events = with_query("/jobs/events", &events);
    let body = html! {
        form.filters method="get" action="/jobs" role="search" aria-label="Filter the jobs" {
            label { "Status "
                select name="status" {
                    option value="" selected[query.status.is_empty()] { "any" }
                    @for s in JobStatus::ALL {
                        option value=(s.as_str()) selected[query.status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "Definition "
                input type="text" name="definition" value=(query.definition) size="12";
            }
            label { "Route "
                select name="route" {
                    option value="" selected[query.route.is_empty()] { "any" }
                    @for r in Route::ALL {
                        option value=(r.as_str()) selected[query.route == r.as_str()] { (r.as_str()) }
                    }
                }
            }
            label { "Tag (KEY=VALUE) "
                input type="text" name="tag" value=(query.tag) size="14";
            }
            label { "Changed since "
                input type="text" name="since" value=(query.since) size="12" placeholder="7d, 2026-12-01";
            }
            label { "Changed until "
                input type="text" name="until" value=(query.until) size="12" placeholder="1h, 2026-12-02";
            }
            button type="submit" { "Filter" }
        }
        form.filters method="get" action="/jobs" role="search" aria-label="Find a job by its id" {
            label { "Job id "
                input type="search" name="id" value=(query.id) size="24";
            }
            button type="submit" { "Open" }
        }
        @if let Some(problem) = problem {
            p role="alert" { (problem) }
        }
        @if live {
            nav.counts aria-label="Jobs by status" {
                ul {
                    @for s in JobStatus::ALL {
                        li { a href=(status_link(&filters, s)) aria-current=[(query.status == s.as_str()).then_some("page")] {
                            (s.as_str()) " " span.count data-count=(s.as_str()) { "…" }
                        } }
                    }
                }
                p.muted #live-status aria-live="polite" { "Counts and the newest jobs follow the table while this page is open (it needs JavaScript)." }
            }
        }
        div.scroll data-events=[live.then_some(&events)] {
            table.jobs {
                caption { "Jobs, the most recently changed first" }
                (head(&["Job", "Status", "Definition", "Route", "Attempts", "Cost", "Changed (UTC)", "Reason"]))
                tbody data-live="rows" { (rows(page)) }
            }
        }
        @if page.jobs.is_empty() && problem.is_none() && !page.stopped {
            p { "No job matches." }
        }
        @if page.stopped {
            p { "The tag search read " (page.examined) " jobs and stopped (tags are read job by job): "
                @if let Some(next) = &next { a href=(next) { "search older jobs" } } }
        } @else if let Some(next) = next {
            p { a rel="next" href=(next) { "Older jobs" } }
        }
    };
    layout_with_script("Jobs", "jobs", body, live)
}

/// Output as the job page shows it: each launch's title and lines.
pub type Output = Result<Vec<(String, Vec<String>)>, String>;

/// A job: what it is now, its attempts, its output, and Cancel. While the
/// job has not ended, its facts and output follow it (server-sent events).
pub fn job(view: &JobView, updated_at: Option<i64>, ended: bool, output: &Output) -> Markup {
    // What the page shows, so that the events begin with what changes.
    let lines: usize = output
        .as_ref()
        .map_or(0, |o| o.iter().map(|(_, l)| l.len() + 1).sum());
    let events = format!(
        "/jobs/{}/events?at={}&lines={lines}",
        path_segment(&view.job_id),
        updated_at.unwrap_or_default()
    );
    let body = html! {
        div data-events=[(!ended).then_some(&events)] {
            div data-live="job" { (job_facts(view, ended)) }
            h2 #output { "Output" }
            div data-live="output" { (job_output(output)) }
        }
    };
    layout_with_script(&format!("Job {}", view.job_id), "", body, !ended)
}

/// What a job is now and its attempts, oldest first.
pub fn job_facts(view: &JobView, ended: bool) -> Markup {
    html! {
        p.lead {
            span class={ "status " (status_class(view.status)) } { (view.status) }
            @if let Some(now) = &view.now { " " (now) }
        }
        dl.facts {
            dt { "Definition" } dd { (view.definition.as_deref().unwrap_or("-")) }
            dt { "Route" } dd { (view.route.unwrap_or("-")) }
            dt { "Attempts" } dd { (view.attempts) @if let Some(max) = view.max_attempts { " of " (max) } }
            dt { "Interruptions" } dd { (view.interruptions) }
            dt { "Waits for capacity" } dd { (view.waits_for_capacity) }
            @if let Some(at) = &view.next_try_at { dt { "Next try" } dd { (at) } }
            @if let Some(at) = &view.created_at { dt { "Recorded" } dd { (at) } }
            @if let Some(at) = &view.dispatched_at { dt { "Launched" } dd { (at) } }
            @if let Some(at) = &view.ended_at { dt { "Ended" } dd { (at) } }
            @if let Some(code) = view.exit_code { dt { "Exit code" } dd { (code) } }
            dt { "Cost" } dd { (money(view.cost_usd)) }
            @if let Some(reason) = &view.reason { dt { "Reason" } dd.reason { (reason) } }
            @for (k, v) in &view.tags { dt { "Tag " (k) } dd { (v) } }
        }
        @if !ended {
            p { a.button href={ "/jobs/" (path_segment(&view.job_id)) "/cancel" } { "Cancel this job…" } }
        }
        h2 #attempts { "Attempts" }
        @if view.history.is_empty() {
            p { "No attempt has ended yet." }
        } @else {
            div.scroll { table {
                caption { "Each launch's end, oldest first" }
                (head(&["Launch", "Route", "Ran on", "Outcome", "Exit code", "Ended", "Cost", "Task or request", "Reason"]))
                tbody { @for a in &view.history { tr {
                    th scope="row" { (a.launch) }
                    td { (a.route.unwrap_or("-")) }
                    td.reason { (view.costs.iter().find(|c| c.launch == a.launch).map_or("-", |c| c.basis.as_str())) }
                    td { (a.outcome) }
                    td.num { @if let Some(c) = a.exit_code { (c) } @else { "-" } }
                    td.time { (a.ended_at.as_deref().map_or_else(|| "-".to_owned(), short)) }
                    td.num { (money(a.cost_usd)) }
                    td.id { (a.id.as_deref().unwrap_or("-")) }
                    td.reason { (a.reason.as_deref().unwrap_or("")) }
                } } }
            } }
        }
    }
}

/// A job's output, launch by launch.
pub fn job_output(output: &Output) -> Markup {
    html! {
        @match output {
            Err(why) => p role="alert" { "The output cannot be read: " (why) },
            Ok(launches) if launches.is_empty() => p { "The job has not started." },
            Ok(launches) => {
                @for (title, lines) in launches {
                    h3 { (title) }
                    @if lines.is_empty() {
                        p { "No output in CloudWatch Logs yet." }
                    } @else {
                        pre tabindex="0" aria-label={ "output of " (title) } { @for l in lines { (l) "\n" } }
                    }
                }
            }
        }
    }
}

fn at(ms: Option<i64>) -> String {
    ms.and_then(crate::view::iso)
        .unwrap_or_else(|| "-".to_owned())
}

fn instance_state(o: &berth_aws::ecs::Observed) -> String {
    let mut state = match o.instance.status {
        InstanceStatus::Active => "ACTIVE",
        InstanceStatus::Draining => "DRAINING",
        InstanceStatus::Registering => "REGISTERING",
        InstanceStatus::Other => "leaving",
    }
    .to_owned();
    if !o.instance.agent_connected {
        state.push_str(", agent disconnected");
    }
    if o.retiring.is_some() {
        state.push_str(", retired by the scaler");
    }
    if o.reclaimed.is_some() {
        state.push_str(", being reclaimed");
    }
    state
}

/// The cluster: its instances and group, its metrics, the scaler's last
/// decisions.
pub fn cluster(view: &ClusterView) -> Markup {
    let latest = |metric: &str| {
        view.history.as_ref().ok().and_then(|h| {
            h.iter()
                .find(|h| h.metric == metric)
                .and_then(|h| h.points.last().copied())
        })
    };
    let body = html! {
        p.lead {
            "Cluster " strong { (view.cluster) } ": "
            (view.instances.len()) " container instance(s), "
            (view.instances.iter().map(|o| o.tasks).sum::<u32>()) " task(s) on them; "
            a href="/jobs?status=WAITING_FOR_CAPACITY" {
                @if view.waiting > super::PAGE { "more than " (super::PAGE) } @else { (view.waiting) }
                " job(s) waiting for capacity"
            }
            "."
        }
        @match &view.group {
            None => p { "No scaler: the cluster's instances are not berth's to start or stop." },
            Some(Err(why)) => p role="alert" { "The Auto Scaling group cannot be read: " (why) },
            Some(Ok(g)) => p {
                "Auto Scaling group: desired " strong { (g.desired) } " (minimum " (g.min) ", maximum " (g.max) "), "
                (g.instances.len()) " instance(s) launching or in service."
            },
        }
        @if !view.launching.is_empty() {
            h2 #launching { "Launching" }
            ul { @for (id, ty) in &view.launching {
                li { (id) " (" (ty) "): started by the group, not yet registered with the cluster" }
            } }
        }
        h2 #instances { "Instances" }
        @if view.instances.is_empty() {
            p { "No container instance: the cluster is at rest, and costs nothing." }
        } @else {
            div.scroll { table {
                caption { "The cluster's container instances" }
                (head(&["EC2 instance", "Type", "Bought", "State", "Tasks", "Room left", "Idle since", "Last task stopped"]))
                tbody { @for o in &view.instances { tr {
                    th scope="row" { (o.ec2_instance_id) }
                    td { (o.instance_type.as_deref().unwrap_or("-")) }
                    td { @match o.market.as_deref() { Some("spot") => "Spot", Some("on-demand") => "on demand", Some(m) => (m), None => "-" } }
                    td { (instance_state(o)) }
                    td.num { (o.tasks) }
                    td.num { (o.remaining.cpu) " CPU units, " (o.remaining.memory) " MiB" @if o.remaining.gpu > 0 { ", " (o.remaining.gpu) " GPU" } }
                    td { (at(o.idle_since.as_deref().and_then(|s| s.parse().ok()))) }
                    td { (at(o.task_stopped.and_then(|t| i64::try_from(t).ok()))) }
                } } }
            } }
        }
        h2 #metrics { "The last " (super::cluster::HOURS) " hours" }
        @match &view.history {
            Err(why) => p role="alert" { "The metrics cannot be read: " (why) },
            Ok(history) => {
                p {
                    "SchedulableContainers (how many of the largest containers the cluster can still place) and JobsWaitingForCapacity, each minute's maximum, as the capacity metric published them; nothing is published while the cluster rests. Latest: "
                    @match latest(berth_aws::metrics::SCHEDULABLE_CONTAINERS) { Some((t, v)) => { (v) " schedulable at " (at(Some(t))) }, None => "none published" }
                    "; "
                    @match latest(berth_aws::metrics::JOBS_WAITING) { Some((t, v)) => { (v) " waiting at " (at(Some(t))) }, None => "no waiting count published" }
                    "."
                }
                @match super::cluster::chart(history, view.now_ms) {
                    Ok(svg) => figure.chart role="img" aria-label="SchedulableContainers and JobsWaitingForCapacity over the last hours" {
                        (maud::PreEscaped(svg))
                    },
                    Err(why) => p role="alert" { "The chart cannot be drawn: " (why) },
                }
            }
        }
        h2 #decisions { "The scaler's decisions" }
        @match &view.decisions {
            Err(why) => p role="alert" { "The decisions cannot be read: " (why) },
            Ok(d) if d.is_empty() => p { "The scaler has decided nothing yet." },
            Ok(d) => div.scroll { table {
                caption { "The last " (d.len()) ", the newest first" }
                (head(&["When", "Desired", "Decision"]))
                tbody { @for x in d { tr {
                    th scope="row" { (at(Some(x.at_ms))) }
                    td.num { (x.desired.0) " → " (x.desired.1) }
                    td.reason { (x.reason) }
                } } }
            } },
        }
    };
    layout("Cluster", "cluster", body)
}

/// The simulator's outcomes as a table.
pub fn outcomes(outcomes: &[berth_sim::Outcome], caption: &str) -> Markup {
    html! {
        div.scroll { table {
            caption { (caption) }
            (head(&["Policy", "Cost", "EC2 and EBS", "Fargate", "Lambda jobs", "berth itself", "Wait p50 s", "p95 s", "max s", "Instance hours", "idle", "On Fargate", "Jobs ok / failed / unfinished / lost"]))
            tbody { @for o in outcomes { tr {
                th scope="row" { (o.policy) @if let Some(n) = o.always_on_instances { " (" (n) ")" } }
                td.num { (format!("${:.2}", o.cost_usd)) }
                td.num { (format!("${:.2}", o.cost.ec2 + o.cost.ebs)) }
                td.num { (format!("${:.2}", o.cost.fargate)) }
                td.num { (format!("${:.2}", o.cost.lambda_jobs)) }
                td.num { (format!("${:.2}", o.cost.functions + o.cost.requests + o.cost.cloudwatch)) }
                td.num { (format!("{:.1}", o.wait_p50_s)) }
                td.num { (format!("{:.1}", o.wait_p95_s)) }
                td.num { (format!("{:.0}", o.wait_max_s)) }
                td.num { (format!("{:.1}", o.instance_hours)) }
                td.num { (format!("{:.1}", o.idle_instance_hours)) }
                td.num { (format!("{:.0}%", o.fargate_share * 100.0)) }
                td.num { (o.jobs_succeeded) " / " (o.jobs_failed + o.jobs_timed_out) " / " (o.jobs_unfinished) " / " (o.jobs_lost) }
            } } }
        } }
    }
}

/// The cost view: the form, the report and its limits, and the replay.
pub fn cost(query: &super::cost::CostQuery, view: Result<&super::cost::CostView, &str>) -> Markup {
    let body = html! {
        form.filters method="get" action="/cost" aria-label="What the jobs cost" {
            label { "Since "
                input type="text" name="since" value=(query.since) size="12" placeholder="7d, 2026-12-01";
            }
            label { "Until (blank: now) "
                input type="text" name="until" value=(query.until) size="12";
            }
            label { "By (day, definition, route or tag:KEY) "
                input type="text" name="by" value=(query.by) size="14" list="cost-by";
                datalist #cost-by {
                    @for by in ["day", "definition", "route"] { option value=(by) {} }
                }
            }
            button type="submit" { "Show" }
        }
        @match view {
            Err(why) => p role="alert" { (why) },
            Ok(view) => {
                @let r = &view.report;
                p.lead {
                    (format!("${:.4}", r.total_usd)) " for " (r.attempts) " attempt(s) of " (r.jobs) " job(s), "
                    (r.since.as_deref().unwrap_or("-")) " to " (r.until.as_deref().unwrap_or("-")) "."
                }
                p.muted { "This is " (r.note.replace('`', "")) "." }
                @if r.groups.is_empty() {
                    p { "No attempt ended in this time." }
                } @else {
                    div.scroll { table {
                        caption { "By " (r.by) ", the costliest first" }
                        (head(&[r.by.as_str(), "Jobs", "Attempts", "Cost"]))
                        tbody { @for g in &r.groups { tr {
                            th scope="row" { (g.key) }
                            td.num { (g.jobs) } td.num { (g.attempts) } td.num { (format!("${:.6}", g.usd)) }
                        } } }
                    } }
                }
                @if !r.limits.is_empty() {
                    h2 #limits { "Spending limits today" }
                    div.scroll { table {
                        caption { "Each limited definition's spend of the day" }
                        (head(&["Definition", "Spent", "Limit", "Next day from"]))
                        tbody { @for l in &r.limits { tr {
                            th scope="row" { (l.definition) }
                            td.num { (format!("${:.4}", l.spent_today_usd)) }
                            td.num { (format!("${:.2}", l.daily_limit_usd)) }
                            td { (l.next_day_at.as_deref().unwrap_or("-")) }
                        } } }
                    } }
                }
                h2 #replay { "The same jobs in the simulator" }
                @match &view.replay {
                    None => form method="get" action="/cost" {
                        input type="hidden" name="since" value=(query.since);
                        input type="hidden" name="until" value=(query.until);
                        input type="hidden" name="by" value=(query.by);
                        input type="hidden" name="replay" value="on";
                        p { "Replays the jobs recorded on these days (from the first day's midnight, UTC) under berth and its alternatives, with their sizes and run times as recorded. " button type="submit" { "Replay" } }
                    },
                    Some(Err(why)) => p role="alert" { (why) },
                    Some(Ok(replay)) => {
                        p {
                            (replay.jobs) " job(s) over " (replay.days) " day(s) from " (replay.from)
                            @if replay.left_out > 0 { "; " (replay.left_out) " left out (not ended, cancelled or never run)" }
                            ". The simulator's cost is the whole deployment's (idle instance time and berth's own functions included), so it is above the attempts' cost."
                        }
                        (outcomes(&replay.outcomes, "Each policy on the recorded jobs"))
                    }
                }
            }
        }
    };
    layout("Cost", "cost", body)
}

/// The simulate view: the form, and the answer when there is one.
pub fn simulate(
    asked: &super::simulate::Asked,
    ran: Option<&Result<super::simulate::Ran, String>>,
) -> Markup {
    let body = html! {
        p { "The simulator (" code { "berth simulate" } ") runs a day of jobs through berth and its alternatives at AWS's published prices; no AWS account is involved. Its figures and their sources: " code { "berth simulate --assumptions" } "." }
        form.sim method="post" action="/simulate" enctype="multipart/form-data" aria-label="What to simulate" {
            fieldset {
                legend { "The jobs" }
                label { "A built-in trace "
                    select name="trace" {
                        @for (name, jobs) in super::simulate::traces() {
                            option value=(name) selected[asked.trace == name] { (name) " (" (jobs) " jobs)" }
                        }
                    }
                }
                label { "Jobs (blank: the trace's own) "
                    input type="text" name="jobs" inputmode="numeric" value=(asked.jobs) size="7";
                }
                label { "Or a CSV trace of your own (docs/simulator.md gives its columns) "
                    input type="file" name="csv" accept=".csv,text/csv";
                }
            }
            fieldset.policies {
                legend { "Policies" }
                @for p in super::simulate::policies() {
                    label.check { input type="checkbox" name="policy" value=(p) checked[asked.policies.iter().any(|a| a == p)]; " " (p) }
                }
            }
            fieldset {
                legend { "Settings" }
                label { "Seed "
                    input type="text" name="seed" inputmode="numeric" value=(asked.seed) size="5";
                }
                label.check { input type="checkbox" name="limits" value="on" checked[asked.limits]; " AWS's rate limits" }
                button type="submit" formmethod="get" formenctype="application/x-www-form-urlencoded" { "Simulate the built-in trace" }
                button type="submit" { "Upload the CSV and simulate" }
            }
        }
        @match ran {
            None => {},
            Some(Err(why)) => p role="alert" { (why) },
            Some(Ok(ran)) => {
                h2 #answer { (ran.title) }
                (outcomes(&ran.outcomes, "Each policy on the same jobs"))
                @match &ran.plot {
                    Ok(svg) => figure.chart role="img" aria-label={ "Instances, tasks and waiting jobs over the day, per policy: " (ran.title) } {
                        (maud::PreEscaped(svg))
                    },
                    Err(why) => p role="alert" { "The plot cannot be drawn: " (why) },
                }
            }
        }
    };
    layout("Simulate", "simulate", body)
}

/// Cancel's confirmation.
pub fn cancel(job_id: &str, status: &str) -> Markup {
    let path = format!("/jobs/{}", path_segment(job_id));
    let body = html! {
        p { "Job " strong { (job_id) } " is " (status) ". Cancelling it stops its task or invocation, if it runs, and ends it CANCELLED; it does not run again." }
        form method="post" action={ (path) "/cancel" } {
            input type="hidden" name="confirm" value="yes";
            button.danger type="submit" { "Yes, cancel " (job_id) }
            " "
            a href=(path) { "No, keep it" }
        }
    };
    layout(&format!("Cancel job {job_id}?"), "", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_values_are_encoded_for_urls() {
        assert_eq!(path_segment("frames:2"), "frames:2");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(query_value("1.a/b"), "1.a%2Fb");
    }

    #[test]
    fn text_from_jobs_is_escaped() {
        let page = failed("<script>alert(1)</script>").into_string();
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("<script>"));
    }
}
