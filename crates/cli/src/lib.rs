//! The `berth` command line: what each command does, on the SDK clients it
//! is given (the local AWS or an account, by the usual AWS environment) and
//! the `BERTH_*` settings the functions use. `main.rs` parses and prints.

pub mod console;
pub mod logs;
pub mod simulate;
pub mod spend;
pub mod view;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use berth_core::dependency::Dependency;

use berth_aws::definitions::Lookup;
use berth_aws::operations::{self, Cancelled};
use berth_aws::stack::StackError;
use berth_aws::store::{JobRecord, JobSummary};
use berth_aws::{AwsError, Clients, Definitions, EcsCluster, JobQueue, JobStore, Settings};
use berth_core::capacity::{
    LargestContainer, Resources, Thresholds, check_scale_in, explain_thresholds, most_per_instance,
};
use berth_core::{JobDefinition, JobStatus, ResolvedJob, Route, cost, job, scaling};

/// Everything that ends a command, said in one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{0}")]
    Failed(String),
}

impl From<StackError> for CliError {
    fn from(e: StackError) -> Self {
        match e {
            StackError::Aws(e) => Self::Aws(e),
            other => Self::Input(other.to_string()),
        }
    }
}

/// A job to submit, from flags or a file.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// A JSON job message (v1), from a file or standard input.
    pub body: Option<String>,
    pub job_id: Option<String>,
    pub definition: Option<String>,
    pub command: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    pub gpu: Option<u32>,
    pub timeout_seconds: Option<u32>,
    pub processor: Option<String>,
    pub max_attempts: Option<u32>,
    /// Tags, KEY=VALUE: on its ECS tasks and its record.
    pub tags: Vec<(String, String)>,
    /// The jobs it waits for, each with its condition.
    pub depends_on: Vec<Dependency>,
    /// Its children, for an array.
    pub array: Option<berth_core::array::ArraySpec>,
}

/// How long `berth submit` waits for a job it depends on to be recorded
/// (one submitted a moment before may not have been taken from the queue
/// yet) before it refuses the submission.
pub const DEPENDENCY_RECORD_WAIT: Duration = Duration::from_secs(30);

impl Submission {
    /// The job message this submission sends.
    pub fn message(&self) -> Result<String, CliError> {
        if let Some(body) = &self.body {
            return Ok(body.clone());
        }
        let definition = self
            .definition
            .as_ref()
            .ok_or_else(|| CliError::Input("a job needs --definition (or --file)".into()))?;
        let mut m = serde_json::Map::new();
        m.insert("definition".into(), definition.clone().into());
        if let Some(id) = &self.job_id {
            m.insert("job_id".into(), id.clone().into());
        }
        if !self.command.is_empty() {
            m.insert("command".into(), self.command.clone().into());
        }
        // NAME=VALUE pairs as a JSON object of strings.
        for (field, pairs) in [("environment", &self.environment), ("tags", &self.tags)] {
            if !pairs.is_empty() {
                let object: serde_json::Map<String, serde_json::Value> = pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect();
                m.insert(field.into(), object.into());
            }
        }
        for (name, value) in [
            ("cpu", self.cpu),
            ("memory", self.memory),
            ("gpu", self.gpu),
            ("timeout_seconds", self.timeout_seconds),
            ("max_attempts", self.max_attempts),
        ] {
            if let Some(v) = value {
                m.insert(name.into(), v.into());
            }
        }
        if let Some(p) = &self.processor {
            m.insert("processor".into(), p.clone().into());
        }
        if !self.depends_on.is_empty() {
            let deps = serde_json::to_value(&self.depends_on)
                .map_err(|e| CliError::Input(e.to_string()))?;
            m.insert("depends_on".into(), deps);
        }
        if let Some(array) = &self.array {
            let array = serde_json::to_value(array).map_err(|e| CliError::Input(e.to_string()))?;
            m.insert("array".into(), array);
        }
        Ok(serde_json::Value::Object(m).to_string())
    }
}

/// `body` with a `job_id` of its own: a new random one (a UUID) when it is a
/// JSON object that names none; otherwise as it is.
fn with_job_id(body: String) -> String {
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut job))
            if job.get("job_id").is_none_or(serde_json::Value::is_null) =>
        {
            let id = uuid::Uuid::new_v4().to_string();
            job.insert("job_id".into(), id.into());
            serde_json::Value::Object(job).to_string()
        }
        _ => body,
    }
}

/// The CLI's view of a deployment.
#[derive(Debug, Clone)]
pub struct Berth {
    pub settings: Settings,
    pub clients: Clients,
}

impl Berth {
    pub fn new(settings: Settings, clients: Clients) -> Self {
        Self { settings, clients }
    }

    /// The job store of this stack.
    pub fn store(&self) -> JobStore {
        JobStore::new(self.clients.dynamodb.clone(), &self.settings.jobs_table)
    }

    fn definitions(&self) -> Definitions {
        Definitions::for_deployment(&self.settings, &self.clients)
    }

    /// Checks the job as the driver will (the message, and that its
    /// definition is registered), sends it, and returns its job id. A job
    /// that names no id is given one here, before it is sent, so that a
    /// message the SDK sends twice (its first answer lost) is one job.
    pub async fn submit(&self, submission: &Submission) -> Result<String, CliError> {
        let body = with_job_id(submission.message()?);
        // The body names its job id now; the message id, unknown before
        // sending, is never used for it.
        let request = job::parse(&body, "unsent").map_err(|e| CliError::Input(e.to_string()))?;
        let found = self
            .definitions()
            .get_many(&[request.definition.as_str()])
            .await?;
        // As the driver will: the definition resolved into the job, and the
        // job routed (a forced processor it cannot use is refused here).
        let definition = match found.get(&request.definition) {
            Some(Lookup::Found(def)) => def,
            Some(Lookup::Malformed(why)) => return Err(CliError::Input(why.clone())),
            None => {
                return Err(CliError::Input(format!(
                    "unknown job definition `{}`: register it with `berth definitions put`",
                    request.definition
                )));
            }
        };
        let resolved = berth_core::resolve(&request, Some(definition))
            .map_err(|e| CliError::Input(e.to_string()))?;
        self.routable(&resolved)
            .map_err(|e| CliError::Input(e.to_string()))?;
        if let Some(existing) = self.store().get(&request.job_id).await? {
            return Err(CliError::Input(format!(
                "job `{}` exists already ({}): a job id names one job, so this one would not run; give another --job-id, or none for a new one",
                request.job_id,
                existing.status.as_str()
            )));
        }
        self.dependencies_recorded(&request.depends_on).await?;
        let queue = self
            .settings
            .queue_url
            .as_ref()
            .ok_or_else(|| CliError::Input("BERTH_QUEUE_URL is not set".into()))?;
        JobQueue::new(self.clients.sqs.clone(), queue)
            .submit(&body)
            .await?;
        Ok(request.job_id)
    }

    /// Refuses dependencies that are not recorded, after waiting
    /// [`DEPENDENCY_RECORD_WAIT`] for them: the driver would reject the job.
    async fn dependencies_recorded(&self, deps: &[Dependency]) -> Result<(), CliError> {
        if deps.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = deps.iter().map(|d| d.job_id.as_str()).collect();
        let started = std::time::Instant::now();
        loop {
            let statuses = self.store().statuses(&ids).await?;
            let unknown: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| !statuses.contains_key(*id))
                .collect();
            if unknown.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= DEPENDENCY_RECORD_WAIT {
                return Err(CliError::Input(format!(
                    "`--depends-on`: no job {} is recorded (waited {} s); a job may depend only on jobs submitted before it",
                    unknown.join(", "),
                    DEPENDENCY_RECORD_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The records of `job_ids`, in that order; `None` for a job not yet
    /// recorded (its message not yet taken by the driver).
    pub async fn records(
        &self,
        job_ids: &[String],
    ) -> Result<Vec<(String, Option<JobRecord>)>, CliError> {
        let store = self.store();
        let mut out = Vec::with_capacity(job_ids.len());
        for id in job_ids {
            out.push((id.clone(), store.get(id).await?));
        }
        Ok(out)
    }

    /// The job's record.
    pub async fn status(&self, job_id: &str) -> Result<JobRecord, CliError> {
        self.store()
            .get(job_id)
            .await?
            .ok_or_else(|| CliError::Failed(format!("no job `{job_id}`")))
    }

    /// An array's children counted by status, as AWS Batch's
    /// `statusSummary` counts them: those not released yet are `PENDING`.
    /// `None` for any other job.
    pub async fn children_summary(
        &self,
        r: &JobRecord,
    ) -> Result<Option<BTreeMap<String, u32>>, CliError> {
        let Some(children) = &r.children else {
            return Ok(None);
        };
        let ids: Vec<(u32, String)> = children
            .released_indices()
            .map(|i| (i, berth_core::array::child_id(&r.job_id, i)))
            .collect();
        let refs: Vec<&str> = ids.iter().map(|(_, id)| id.as_str()).collect();
        let statuses = self.store().statuses(&refs).await?;
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        let mut count = |status: JobStatus| {
            *counts.entry(status.as_str().to_owned()).or_default() += 1;
        };
        for (index, id) in &ids {
            match statuses.get(id) {
                Some(status) => count(*status),
                // Given up (it never ran: what it followed did not end
                // as it needed): counted as not succeeded.
                None if children.failed.contains(index) => count(JobStatus::Failed),
                // Released, its message not yet taken.
                None => count(JobStatus::Pending),
            }
        }
        // Not released yet.
        let unreleased = children.size - u32::try_from(ids.len()).unwrap_or(children.size);
        if unreleased > 0 {
            *counts
                .entry(JobStatus::Pending.as_str().to_owned())
                .or_default() += unreleased;
        }
        Ok(Some(counts))
    }

    /// The children of array `parent` by index, from `first`: at most
    /// `limit`, in `status` and on `route` when given.
    pub async fn list_array(
        &self,
        parent: &str,
        status: Option<JobStatus>,
        route: Option<Route>,
        limit: usize,
    ) -> Result<Vec<JobSummary>, CliError> {
        let record = self.status(parent).await?;
        let Some(children) = record.children else {
            return Err(CliError::Input(format!("`{parent}` is not an array job")));
        };
        let store = self.store();
        let mut jobs = Vec::new();
        let ids: Vec<String> = children
            .released_indices()
            .map(|i| berth_core::array::child_id(parent, i))
            .collect();
        for chunk in ids.chunks(100) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let mut found = store.records_of(&refs).await?;
            found.sort_by_key(|r| berth_core::array::parent_of(&r.job_id).map(|(_, i)| i));
            jobs.extend(
                found
                    .into_iter()
                    .filter(|r| status.is_none_or(|s| r.status == s))
                    .filter(|r| route.is_none() || r.route == route)
                    .map(JobSummary::from),
            );
            if jobs.len() >= limit {
                break;
            }
        }
        jobs.truncate(limit);
        Ok(jobs)
    }

    /// Jobs, most recently changed first: in `status` (all when `None`),
    /// on `route` (any when `None`).
    pub async fn list(
        &self,
        status: Option<JobStatus>,
        route: Option<Route>,
        limit: usize,
    ) -> Result<Vec<JobSummary>, CliError> {
        let statuses: Vec<JobStatus> = match status {
            Some(s) => vec![s],
            None => JobStatus::ALL.to_vec(),
        };
        // Each status's most recent `limit` hold the overall most recent
        // `limit`, unless a route filter drops some of them.
        let per_status = if route.is_none() { limit } else { usize::MAX };
        let mut jobs = Vec::new();
        for s in statuses {
            jobs.extend(self.store().in_status(s, per_status).await?);
        }
        jobs.retain(|j| route.is_none() || j.route == route);
        jobs.sort_by_key(|j| std::cmp::Reverse(j.updated_at));
        jobs.truncate(limit);
        // The status index keeps no costs: they are read for the page.
        let ids: Vec<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
        let costs = self.store().costs_of(&ids).await?;
        for j in &mut jobs {
            j.cost_usd = costs.get(&j.job_id).copied();
        }
        Ok(jobs)
    }

    /// What the jobs' attempts that ended in `[since_ms, until_ms)` cost,
    /// grouped `by`.
    pub async fn cost(
        &self,
        since_ms: i64,
        until_ms: i64,
        by: &spend::GroupBy,
    ) -> Result<spend::Report, CliError> {
        if since_ms >= until_ms {
            return Err(CliError::Input(format!(
                "--since ({}) is not before --until ({})",
                view::iso(since_ms).unwrap_or_default(),
                view::iso(until_ms).unwrap_or_default()
            )));
        }
        let jobs = self.store().costed_jobs().await?;
        let mut report = spend::report(&jobs, since_ms, until_ms, by);
        // Each limited definition's spend of the day against its limit.
        let now = now_ms();
        let day = self.settings.spending_day;
        for def in self.definitions_list().await? {
            let Some(limit) = def.daily_limit_usd else {
                continue;
            };
            let key = berth_aws::spending::SpendKey {
                definition: def.name.clone(),
                day_start_ms: day.start(now),
            };
            report.limits.push(spend::Limit {
                definition: def.name,
                daily_limit_usd: limit,
                spent_today_usd: self.store().spent(&key).await?,
                day_started_at: view::iso(day.start(now) - day.offset_ms),
                next_day_at: view::iso(day.next_start(now) - day.offset_ms),
            });
        }
        Ok(report)
    }

    /// Cancels `job_id` wherever it is; what that did, in one line.
    pub async fn cancel(&self, job_id: &str, reason: Option<&str>) -> Result<String, CliError> {
        let ecs = EcsCluster::for_deployment(&self.settings, &self.clients);
        let queue = self
            .settings
            .queue_url
            .as_ref()
            .map(|url| JobQueue::new(self.clients.sqs.clone(), url));
        match operations::cancel(&self.store(), &ecs, queue.as_ref(), job_id, reason).await? {
            Cancelled::NotFound => Err(CliError::Failed(format!("no job `{job_id}`"))),
            done => Ok(done.describe(job_id)),
        }
    }

    /// Registers (or replaces) the definitions in `file`: one JSON object,
    /// or an array of them.
    /// Registers the definitions of `file`; their names, and a warning for
    /// each that the deployment's instance types cannot always run.
    pub async fn put_definitions(
        &self,
        file: &Path,
    ) -> Result<(Vec<String>, Vec<String>), CliError> {
        let text = read(file)?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| CliError::Input(format!("{}: not JSON: {e}", file.display())))?;
        let list = match value {
            serde_json::Value::Array(list) => list,
            one => vec![one],
        };
        let mut defs = Vec::new();
        for (i, v) in list.into_iter().enumerate() {
            let def: JobDefinition = serde_json::from_value(v).map_err(|e| {
                CliError::Input(format!("{}: definition {}: {e}", file.display(), i + 1))
            })?;
            def.validate()
                .and_then(|()| def.check_prefixes(&self.settings.prefixes))
                .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
            // Its jobs, as they are by default, must have somewhere to run.
            let request = job::parse(&format!(r#"{{"definition":"{}"}}"#, def.name), "check")
                .map_err(|e| CliError::Input(e.to_string()))?;
            let resolved = berth_core::resolve(&request, Some(&def))
                .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
            self.routable(&resolved).map_err(|e| {
                CliError::Input(format!(
                    "{}: job definition `{}`: its jobs cannot run: {}",
                    file.display(),
                    def.name,
                    e.reason
                ))
            })?;
            defs.push(def);
        }
        // Each task definition as ECS has it: it exists, holds the
        // container, and runs on Fargate where the definition says so.
        // Nothing is written unless every definition passes.
        let ecs = EcsCluster::for_deployment(&self.settings, &self.clients);
        for def in &defs {
            let facts = ecs
                .task_definition(&def.task_definition)
                .await
                .map_err(|e| {
                    CliError::Input(format!(
                        "{}: job definition `{}`: task definition `{}` cannot be read: {e}",
                        file.display(),
                        def.name,
                        def.task_definition
                    ))
                })?;
            def.check_task_definition(&facts)
                .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
        }
        let store = self.definitions();
        for def in &defs {
            store.put(def).await?;
        }
        let warnings = match &self.settings.scaling {
            Some(s) => fit_warnings(&defs, &s.instance_types),
            None => Vec::new(),
        };
        Ok((defs.into_iter().map(|d| d.name).collect(), warnings))
    }

    /// Whether `job` has somewhere to run, as the driver decides it (with
    /// the deployment's instance types; whether it does not hang on prices).
    fn routable(&self, job: &ResolvedJob) -> Result<(), berth_core::RouteError> {
        let prices = berth_core::prices::Prices::default();
        let types = scaling::known_types(&self.settings.instance_types);
        let ctx = berth_core::routing::Context {
            ec2_types: types.as_deref(),
            ..berth_core::routing::Context::first(&prices, job)
        };
        berth_core::routing::route(job, &ctx).map(|_| ())
    }

    pub async fn definitions_list(&self) -> Result<Vec<JobDefinition>, CliError> {
        let mut defs = self.definitions().scan().await?;
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(defs)
    }
}

/// Reads a file, or standard input for `-`.
pub fn read(file: &Path) -> Result<String, CliError> {
    if file == Path::new("-") {
        return std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::Input(format!("cannot read standard input: {e}")));
    }
    std::fs::read_to_string(file)
        .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))
}

/// A record, one `name: value` line each, for people.
pub fn describe(r: &JobRecord) -> String {
    describe_view(&view::JobView::of(r, now_ms()))
}

/// A job's view, one `name  value` line each; a value of several lines
/// (a reason with the end of stderr) keeps its lines under its column.
pub fn describe_view(v: &view::JobView) -> String {
    const WIDTH: usize = 14;
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            let indent = " ".repeat(WIDTH);
            let value = value
                .lines()
                .collect::<Vec<_>>()
                .join(&format!("\n{indent}"));
            out.push(format!("{name:<WIDTH$}{value}"));
        }
    };
    add("job", Some(v.job_id.clone()));
    add("status", Some(v.status.to_owned()));
    add(
        "now",
        v.now
            .clone()
            .filter(|_| v.next_try_at.is_some() || v.waiting_since.is_some()),
    );
    add("reason", v.reason.clone());
    add(
        "children",
        v.children.as_ref().map(|counts| {
            let all: u32 = counts.values().sum();
            let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
            format!("{all}: {}", parts.join(", "))
        }),
    );
    add("definition", v.definition.clone());
    add(
        "tags",
        (!v.tags.is_empty()).then(|| {
            v.tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }),
    );
    add(
        "routes",
        (!v.routes.is_empty()).then(|| v.routes.join(" → ")),
    );
    add("created", v.created_at.clone());
    add("dispatched", v.dispatched_at.clone());
    add("ended", v.ended_at.clone());
    add("duration", v.duration_seconds.map(|s| format!("{s:.1} s")));
    if v.job.is_some() {
        add(
            "attempts",
            Some(format!(
                "{} started; {} failed of {} allowed; {} interrupted; {} waits for capacity{}",
                v.attempts,
                v.failures,
                v.max_attempts.map_or("?".into(), |m| m.to_string()),
                v.interruptions,
                v.waits_for_capacity,
                if v.holds > 0 {
                    format!("; held {} times for the spending limit", v.holds)
                } else {
                    String::new()
                }
            )),
        );
    }
    add("task", v.task_arn.clone());
    add("request", v.request_id.clone());
    add("exit code", v.exit_code.map(|c| c.to_string()));
    add(
        "cost",
        v.cost_usd
            .map(|usd| format!("{} (estimated; see `berth cost`)", cost::usd(usd))),
    );
    for h in &v.history {
        add(
            &format!("attempt {}", h.launch),
            Some(format!(
                "{} {}{}{}",
                h.route.unwrap_or("-"),
                h.outcome,
                h.ended_at
                    .as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default(),
                h.reason
                    .as_deref()
                    .map(|r| format!(": {}", view::one_line(r)))
                    .unwrap_or_default()
            )),
        );
    }
    for c in &v.costs {
        add(
            &format!("cost {}", c.launch),
            Some(format!("{} {}: {}", c.route, cost::usd(c.usd), c.basis)),
        );
    }
    out.join("\n")
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    berth_aws::store::now_ms()
}

/// Jobs as a table.
pub fn table(jobs: &[JobSummary]) -> String {
    let rows: Vec<(&str, Option<&JobSummary>)> =
        jobs.iter().map(|j| (j.job_id.as_str(), Some(j))).collect();
    rows_table(&rows)
}

/// `berth watch`'s table: jobs by id, a job not yet recorded shown QUEUED.
pub fn watch_table(jobs: &[(String, Option<JobRecord>)]) -> String {
    let summaries: Vec<(&str, Option<JobSummary>)> = jobs
        .iter()
        .map(|(id, r)| (id.as_str(), r.clone().map(JobSummary::from)))
        .collect();
    let rows: Vec<(&str, Option<&JobSummary>)> =
        summaries.iter().map(|(id, s)| (*id, s.as_ref())).collect();
    rows_table(&rows)
}

fn rows_table(rows: &[(&str, Option<&JobSummary>)]) -> String {
    let now = now_ms();
    let rows = rows.iter().map(|(id, record)| {
        let (status, routes, attempts, usd, reason) = match record {
            Some(j) => (
                j.status.as_str(),
                routes(&j.routes),
                j.attempts,
                j.cost_usd.map_or_else(|| "-".to_owned(), cost::usd),
                view::now_line(
                    j.status,
                    j.reason.as_deref(),
                    j.next_try_at,
                    j.waiting_since,
                    now,
                )
                .unwrap_or_default(),
            ),
            None => (
                "QUEUED",
                "-".to_owned(),
                0,
                "-".to_owned(),
                "not yet taken from the queue".to_owned(),
            ),
        };
        vec![
            (*id).to_owned(),
            status.to_owned(),
            routes,
            attempts.to_string(),
            usd,
            reason,
        ]
    });
    columns(
        &["JOB", "STATUS", "ROUTE", "ATTEMPTS", "COST", "REASON"],
        &[3, 4],
        rows,
    )
}

/// Where each attempt ran, oldest first: `EC2`, `EC2→EC2` (interrupted and
/// run again), `-` before the first.
fn routes(routes: &[Route]) -> String {
    if routes.is_empty() {
        return "-".to_owned();
    }
    routes
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join("→")
}

/// Plain columns as wide as their widest value (a 36-character job id
/// too), two spaces apart, no borders: readable on a terminal and in a log.
/// The columns in `right` are aligned right.
pub fn columns(
    header: &[&str],
    right: &[usize],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> String {
    use comfy_table::{CellAlignment, ContentArrangement, Table, presets::NOTHING};
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    let last = header.len().saturating_sub(1);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out: String = table
        .lines()
        .map(|l| l.trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// Whether every job of a watch has ended.
pub fn settled(jobs: &[(String, Option<JobRecord>)]) -> bool {
    jobs.iter()
        .all(|(_, r)| r.as_ref().is_some_and(|r| r.status.is_final()))
}

/// How `berth watch` ends once every job has: `Ok` when all succeeded,
/// else an error that counts the others by status (a non-zero exit).
pub fn watch_outcome(jobs: &[(String, Option<JobRecord>)]) -> Result<String, CliError> {
    let mut others: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, r) in jobs {
        let status = r.as_ref().map_or("QUEUED", |r| r.status.as_str());
        if status != JobStatus::Succeeded.as_str() {
            others.entry(status).or_default().push(id);
        }
    }
    if others.is_empty() {
        return Ok(String::new());
    }
    let count: usize = others.values().map(Vec::len).sum();
    let parts: Vec<String> = others
        .iter()
        .map(|(status, ids)| format!("{status}: {}", ids.join(", ")))
        .collect();
    Err(CliError::Failed(format!(
        "{count} of {} jobs did not succeed ({})",
        jobs.len(),
        parts.join("; ")
    )))
}

/// `berth thresholds`: prints the two alarm thresholds and why; with
/// `check`, an error when that scale-in threshold would loop.
pub fn thresholds(
    instances: &[Resources],
    largest: LargestContainer,
    headroom: u32,
    check: Option<u32>,
) -> Result<String, CliError> {
    // The explanation comes first, also when the check then fails.
    print!("{}", explain_thresholds(instances, largest, headroom));
    let mut out = String::new();
    if most_per_instance(instances.iter().copied(), largest) == 0 {
        out.push_str(&format!(
            "warning: the largest container ({}) fits none of these instance types: jobs that size never run on EC2; berth's scaler leaves their definitions out of the largest container and never scales for them\n",
            largest.resources()
        ));
    }
    if let Some(scale_in_above) = check {
        let per_instance = most_per_instance(instances.iter().copied(), largest);
        check_scale_in(
            Thresholds {
                scale_out_below: headroom,
                scale_in_above,
            },
            per_instance,
        )
        .map_err(|problem| CliError::Failed(problem.to_string()))?;
        out.push_str(&format!(
            "scale-in threshold {scale_in_above} does not loop\n"
        ));
    }
    Ok(out)
}

/// `berth thresholds --output json`: the same figures for scripts. A
/// scale-in threshold that loops is in the JSON (`"loops": true`) and still
/// fails the command.
pub fn thresholds_json(
    instances: &[Resources],
    largest: LargestContainer,
    headroom: u32,
    check: Option<u32>,
) -> Result<String, CliError> {
    let per_instance = most_per_instance(instances.iter().copied(), largest);
    let t = berth_core::capacity::thresholds(per_instance, headroom);
    let l = largest.resources();
    let checked = check.map(|scale_in_above| {
        check_scale_in(
            Thresholds {
                scale_out_below: headroom,
                scale_in_above,
            },
            per_instance,
        )
    });
    let value = serde_json::json!({
        "largest": { "cpu": l.cpu, "memory": l.memory },
        "instances": instances.iter().map(|r| serde_json::json!({
            "cpu": r.cpu,
            "memory": r.memory,
            "holds": most_per_instance([*r], largest),
        })).collect::<Vec<_>>(),
        "per_instance": per_instance,
        "scale_out_below": t.scale_out_below,
        "scale_in_above": t.scale_in_above,
        "fits_none": per_instance == 0,
        "check": check.zip(checked.as_ref()).map(|(above, result)| serde_json::json!({
            "scale_in_above": above,
            "loops": result.is_err(),
            "problem": result.as_ref().err().map(ToString::to_string),
        })),
    });
    let text = serde_json::to_string_pretty(&value).map_err(|e| CliError::Failed(e.to_string()))?;
    match checked {
        Some(Err(problem)) => {
            println!("{text}");
            Err(CliError::Failed(problem.to_string()))
        }
        _ => Ok(text),
    }
}

/// A warning for each definition the instance types `types` (by name) cannot
/// all run: its jobs never run on EC2 (no type holds them), or the group is
/// not scaled for them (only some do).
pub fn fit_warnings(defs: &[JobDefinition], types: &[String]) -> Vec<String> {
    let known: Vec<scaling::InstanceType> = types
        .iter()
        .filter_map(|t| scaling::InstanceType::known(t))
        .collect();
    let mut warnings: Vec<String> = types
        .iter()
        .filter(|t| !known.iter().any(|k| k.name == **t))
        .map(|t| format!("warning: unknown instance type `{t}`: the scaler cannot size it"))
        .collect();
    let pairs: Vec<(String, scaling::Room)> = defs
        .iter()
        .map(|d| (d.name.clone(), scaling::Room::new(d.cpu, d.memory, d.gpu)))
        .collect();
    let (_, unplaceable) = scaling::largest_container(&pairs, &known);
    warnings.extend(unplaceable.iter().map(|u| format!("warning: {u}")));
    warnings
}

/// An instance: `CPU:MEMORY`, or an instance type's name (what ECS
/// registers of it, by berth-core's catalog).
pub fn instance(s: &str) -> Result<Resources, String> {
    if !s.contains(':') {
        return scaling::InstanceType::known(s)
            .map(|t| t.room.resources())
            .ok_or_else(|| format!("expected CPU:MEMORY or an instance type, found {s:?}"));
    }
    resources(s)
}

/// `CPU:MEMORY`.
pub fn resources(s: &str) -> Result<Resources, String> {
    let (cpu, memory) = s
        .split_once(':')
        .ok_or_else(|| format!("expected CPU:MEMORY, found {s:?}"))?;
    let number = |v: &str, what: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{what} must be a whole number, found {v:?}"))
    };
    Ok(Resources {
        cpu: number(cpu, "CPU")?,
        memory: number(memory, "MEMORY")?,
    })
}

/// The largest container, as `CPU:MEMORY`.
pub fn largest(s: &str) -> Result<LargestContainer, String> {
    let r = resources(s)?;
    LargestContainer::new(r.cpu, r.memory).map_err(|e| e.to_string())
}

/// An instance type's Spot price, as `TYPE=USD` per hour.
pub fn spot_price(s: &str) -> Result<(String, f64), String> {
    let (name, price) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected TYPE=PRICE, e.g. m5.large=0.035"))?;
    let price: f64 = price
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: the price must be a number of USD per hour"))?;
    if !(price.is_finite() && price >= 0.0) {
        return Err(format!("`{s}`: the price must be at least 0"));
    }
    Ok((name.trim().to_owned(), price))
}
