//! A loopback HTTP proxy in front of the local AWS: it delays every call by
//! a fixed latency (like a real round trip to AWS), counts the calls per
//! operation, and can inject faults (throttling answers, 5xx answers,
//! dropped connections, slow answers; RunTask denied for good; a job's next
//! attempt that cannot be queued for a while). The benchmarks and the soak
//! point the functions' clients at it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_sim::limits::Bucket;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A lock is poisoned only when a holder panicked, which is already a failure.
const POISONED: &str = "the proxy's state";

/// Calls seen, by operation (`dynamodb:PutItem`, `ecs:RunTask`, ...): how
/// many, and the time the local AWS took to answer them.
#[derive(Debug, Default)]
pub struct CallCounts(Mutex<BTreeMap<String, Calls>>);

#[derive(Debug, Default, Clone, Copy)]
pub struct Calls {
    pub count: u64,
    /// The local AWS's own time on these calls (the proxy's latency aside).
    pub upstream: Duration,
}

impl CallCounts {
    pub fn take(&self) -> BTreeMap<String, Calls> {
        std::mem::take(&mut *self.0.lock().expect(POISONED))
    }

    fn add(&self, operation: String, upstream: Duration) {
        let mut calls = self.0.lock().expect(POISONED);
        let entry = calls.entry(operation).or_default();
        entry.count += 1;
        entry.upstream += upstream;
    }
}

pub struct LatencyProxy {
    pub endpoint: String,
    pub calls: Arc<CallCounts>,
    shared: Arc<Shared>,
}

struct Shared {
    client: reqwest::Client,
    upstream: String,
    counts: Arc<CallCounts>,
    latency: Duration,
    /// In replay mode, each operation's first answer from the local AWS is
    /// kept and replayed for its later calls.
    replaying: AtomicBool,
    recorded: Mutex<BTreeMap<String, Recorded>>,
    /// Lambda's calls go here when set (the local run's asynchronous
    /// invoke endpoint), everything else to `upstream`.
    lambda_upstream: Option<String>,
    faults: Option<Faults>,
    injected: Mutex<BTreeMap<(String, Fault), u64>>,
    /// RunTask answers by client token: ECS answers a repeated token with
    /// the task it started for it; the local AWS starts another.
    run_task_tokens: Mutex<BTreeMap<String, Recorded>>,
    /// Jobs a RunTask was denied for (`Fault::Denied`).
    denied: Mutex<BTreeSet<String>>,
    /// Next attempts that cannot be queued (`Fault::RequeueLost`), until when.
    doomed: Mutex<HashMap<String, Instant>>,
    /// Jobs whose success cannot be written (`Fault::EndLost`): the writes
    /// still to fail.
    ends_lost: Mutex<HashMap<String, u32>>,
    limits: Option<Mutex<Limits>>,
}

/// How long a next attempt whose queuing failed keeps failing: longer than
/// the SDK's and Lambda's retries of the event that queues it, so that only
/// the sweep's look for quiet jobs can put the job back.
const DOOMED_FOR: Duration = Duration::from_secs(90);

/// The faults to inject: each kind at `rate` (0–1) on the calls whose
/// operation `applies` says; and, with `limits`, AWS's rate limits on
/// RunTask and on DynamoDB's writes, scaled by that factor.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub rate: f64,
    pub applies: fn(&str) -> bool,
    pub limits: Option<f64>,
}

/// AWS's rate limits at the proxy, scaled by `scale` (berth-sim's figures,
/// each with its source): a call over its bucket gets the service's
/// throttling answer, as AWS gives it.
struct Limits {
    since: Instant,
    run_task: Bucket,
    writes: Bucket,
    /// Each RunTask ECS answered with a task, the first time for its client
    /// token: when, and for which `startedBy`.
    launched: Vec<(Instant, String)>,
}

impl Limits {
    fn new(scale: f64) -> Self {
        use berth_sim::figures as f;
        Self {
            since: Instant::now(),
            run_task: Bucket::new(
                f::RUN_TASK_BURST.value * scale,
                f::RUN_TASK_PER_SECOND.value * scale,
            ),
            writes: Bucket::new(
                f::DYNAMODB_NEW_TABLE_WRITES_PER_SECOND.value * scale,
                f::DYNAMODB_NEW_TABLE_WRITES_PER_SECOND.value * scale,
            ),
            launched: Vec::new(),
        }
    }

    /// Whether a call of `operation` gets through now.
    fn admit(&mut self, operation: &str) -> bool {
        let now = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        match operation {
            "ecs:RunTask" => self.run_task.try_take(now),
            "dynamodb:PutItem" | "dynamodb:UpdateItem" | "dynamodb:DeleteItem" => {
                self.writes.try_take(now)
            }
            _ => true,
        }
    }
}

/// One kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// The service's throttling answer.
    Throttled,
    /// A 500 answer.
    ServerError,
    /// The connection closed with no answer, after the call was served.
    Dropped,
    /// The answer two seconds late.
    Slow,
    /// RunTask refused for good (AccessDenied), as for a task definition the
    /// driver may not run.
    Denied,
    /// A job's next attempt (SendMessage with `berth-relaunch-after`) fails,
    /// and keeps failing for a while.
    RequeueLost,
    /// The write of a job's success fails, and the next
    /// [`END_LOST_CALLS`] of it too: more than the SDK's retries, so the
    /// function that ran the job fails, and its retry must record the end.
    EndLost,
}

/// How many writes of a job's success fail in a row under
/// [`Fault::EndLost`] (the functions' SDK clients try a call up to 8 times).
pub const END_LOST_CALLS: u32 = 10;

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::Throttled,
        Fault::ServerError,
        Fault::Dropped,
        Fault::Slow,
        Fault::Denied,
        Fault::RequeueLost,
        Fault::EndLost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Throttled => "throttled",
            Fault::ServerError => "5xx",
            Fault::Dropped => "dropped connection",
            Fault::Slow => "slow (2 s)",
            Fault::Denied => "RunTask denied",
            Fault::RequeueLost => "re-queue lost",
            Fault::EndLost => "job's end lost",
        }
    }

    /// Whether this kind of fault can hit a call of `operation` with `body`.
    fn applies(self, operation: &str, body: &[u8]) -> bool {
        match self {
            Fault::Denied => operation == "ecs:RunTask",
            Fault::RequeueLost => relaunch_key(operation, body).is_some(),
            Fault::EndLost => success_of(operation, body).is_some(),
            _ => true,
        }
    }
}

/// Panics unless `url` is an `http://` URL on the loopback interface:
/// nothing here talks to anything else.
pub fn assert_loopback(url: &str) {
    let host = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_else(|| panic!("{url} is not an http:// URL"));
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    assert!(
        loopback,
        "{url} is not on loopback: only the local AWS is used"
    );
}

#[derive(Clone)]
struct Recorded {
    status: StatusCode,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    body: Bytes,
}

impl LatencyProxy {
    /// Serves on a free loopback port, forwarding to `upstream` (an
    /// `http://` loopback URL) after `latency`.
    pub async fn start(upstream: &str, latency: Duration) -> Self {
        Self::start_with(upstream, None, latency, None).await
    }

    /// As `start`, with Lambda's calls sent to `lambda_upstream` when
    /// given, and `faults` injected.
    pub async fn start_with(
        upstream: &str,
        lambda_upstream: Option<&str>,
        latency: Duration,
        faults: Option<Faults>,
    ) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a free loopback port");
        Self::serve(listener, upstream, lambda_upstream, latency, faults)
    }

    /// Serves on a free port of `address`, an address of this machine
    /// other than loopback (a container network's gateway, which the
    /// containers reach), forwarding as `start_with` does with no latency
    /// and no faults. An unspecified address (0.0.0.0) is refused: that
    /// would serve every network this machine is on.
    pub async fn start_on(
        address: IpAddr,
        upstream: &str,
        lambda_upstream: Option<&str>,
    ) -> Result<Self, String> {
        if address.is_unspecified() {
            return Err(format!(
                "{address} would serve every network of this machine: name one address"
            ));
        }
        let listener = TcpListener::bind((address, 0))
            .await
            .map_err(|e| format!("cannot serve on {address}: {e}"))?;
        Ok(Self::serve(
            listener,
            upstream,
            lambda_upstream,
            Duration::ZERO,
            None,
        ))
    }

    fn serve(
        listener: TcpListener,
        upstream: &str,
        lambda_upstream: Option<&str>,
        latency: Duration,
        faults: Option<Faults>,
    ) -> Self {
        assert_loopback(upstream);
        if let Some(l) = lambda_upstream {
            assert_loopback(l);
        }
        let addr: SocketAddr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let calls = Arc::new(CallCounts::default());
        let shared = Arc::new(Shared {
            client: reqwest::Client::new(),
            upstream: upstream.trim_end_matches('/').to_owned(),
            counts: calls.clone(),
            latency,
            replaying: AtomicBool::new(false),
            recorded: Mutex::new(BTreeMap::new()),
            lambda_upstream: lambda_upstream.map(|l| l.trim_end_matches('/').to_owned()),
            faults,
            injected: Mutex::new(BTreeMap::new()),
            run_task_tokens: Mutex::new(BTreeMap::new()),
            denied: Mutex::new(BTreeSet::new()),
            ends_lost: Mutex::new(HashMap::new()),
            doomed: Mutex::new(HashMap::new()),
            limits: faults
                .and_then(|f| f.limits)
                .map(|k| Mutex::new(Limits::new(k))),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| forward(req, shared.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            endpoint: format!("http://{addr}"),
            calls,
            shared,
        }
    }

    /// Replay mode on or off. In replay mode an operation the proxy has
    /// already seen answered (2xx) gets that same answer back after the
    /// latency, without a call to the local AWS: the callers see real
    /// answers and the latency alone, not the local AWS's own service time.
    pub fn replay(&self, on: bool) {
        self.shared.replaying.store(on, Ordering::SeqCst);
    }

    /// The faults this proxy injects, if any.
    pub fn faults(&self) -> Option<Faults> {
        self.shared.faults
    }

    /// The faults injected so far, by operation and kind.
    pub fn injected(&self) -> BTreeMap<(String, Fault), u64> {
        self.shared.injected.lock().expect(POISONED).clone()
    }

    /// Each RunTask answered with a task, the first time for its client
    /// token, under the rate limits: when, and its `startedBy` (`<job
    /// id>/<launch>`).
    pub fn launched(&self) -> Vec<(Instant, String)> {
        self.shared
            .limits
            .as_ref()
            .map_or_else(Vec::new, |l| l.lock().expect(POISONED).launched.clone())
    }

    /// The jobs a RunTask was denied for, by their `startedBy` job id.
    pub fn denied_jobs(&self) -> BTreeSet<String> {
        self.shared.denied.lock().expect(POISONED).clone()
    }
}

/// The fault to inject on one call of `operation`, if any: each kind that
/// can hit it at `rate`.
fn draw(faults: &Faults, operation: &str, body: &[u8]) -> Option<Fault> {
    let roll = rand_unit();
    Fault::ALL
        .iter()
        .filter(|f| f.applies(operation, body))
        .enumerate()
        .find(|(i, _)| roll < faults.rate * (*i as f64 + 1.0))
        .map(|(_, f)| *f)
}

/// The job a RunTask is for, from its `startedBy` (`<job id>/<launch>`).
fn run_task_job_of(body: &[u8]) -> String {
    let started_by = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["startedBy"].as_str().map(str::to_owned))
        .unwrap_or_default();
    berth_core::launch::parse_started_by(&started_by)
        .map(|(job, _)| job)
        .unwrap_or_default()
}

/// The job whose success an UpdateItem writes (its status set to
/// `SUCCEEDED`), if it is one.
fn success_of(operation: &str, body: &[u8]) -> Option<String> {
    if operation != "dynamodb:UpdateItem" {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let sets_success = v["ExpressionAttributeValues"]
        .as_object()?
        .iter()
        .any(|(name, value)| name == ":status" && value["S"] == "SUCCEEDED");
    sets_success
        .then(|| v["Key"]["job_id"]["S"].as_str().map(str::to_owned))
        .flatten()
}

/// What identifies a job's next attempt in a SendMessage body: the message
/// and the launch it follows. `None` for any other call.
fn relaunch_key(operation: &str, body: &[u8]) -> Option<String> {
    if operation != "sqs:SendMessage" {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let after = v["MessageAttributes"]["berth-relaunch-after"]["StringValue"].as_str()?;
    Some(format!("{}@{after}", v["MessageBody"].as_str()?))
}

/// A uniform number in [0, 1) from a small xorshift generator, seeded per
/// thread from the clock.
pub fn rand_unit() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
                | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// The answer a service gives when it throttles, or fails, in its protocol.
fn fault_answer(operation: &str, fault: Fault) -> Recorded {
    let lambda = operation.starts_with("lambda:");
    let (status, code) = match (fault, lambda) {
        (Fault::Throttled, true) => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException"),
        (Fault::Throttled, false) => (StatusCode::BAD_REQUEST, "ThrottlingException"),
        (Fault::Denied, _) => (StatusCode::BAD_REQUEST, "AccessDeniedException"),
        (_, true) => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceException"),
        (_, false) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure"),
    };
    let body = if lambda {
        format!(r#"{{"Type":"Service","message":"injected: {code}"}}"#)
    } else {
        format!(r#"{{"__type":"{code}","message":"injected: {code}"}}"#)
    };
    Recorded {
        status,
        headers: vec![
            (
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
            ),
            (
                hyper::header::HeaderName::from_static("x-amzn-errortype"),
                hyper::header::HeaderValue::from_static(code),
            ),
        ],
        body: Bytes::from(body),
    }
}

async fn forward(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let operation = operation(&parts, &body);
    tokio::time::sleep(shared.latency).await;

    let fault = shared
        .faults
        .as_ref()
        .filter(|f| (f.applies)(&operation))
        .and_then(|f| draw(f, &operation, &body));
    // A next attempt whose queuing failed keeps failing for a while.
    let relaunch = relaunch_key(&operation, &body);
    let doomed = relaunch.as_ref().is_some_and(|key| {
        let mut doomed = shared.doomed.lock().expect(POISONED);
        if fault == Some(Fault::RequeueLost) {
            doomed
                .entry(key.clone())
                .or_insert_with(|| Instant::now() + DOOMED_FOR);
        }
        doomed.get(key).is_some_and(|until| Instant::now() < *until)
    });
    let fault = if doomed {
        Some(Fault::RequeueLost)
    } else {
        fault
    };
    // A job whose success could not be written fails to write it again,
    // [`END_LOST_CALLS`] times in all.
    let fault = match success_of(&operation, &body) {
        Some(job) => {
            let mut lost = shared.ends_lost.lock().expect(POISONED);
            if fault == Some(Fault::EndLost) {
                lost.entry(job.clone()).or_insert(END_LOST_CALLS);
            }
            match lost.get_mut(&job) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    Some(Fault::EndLost)
                }
                _ => fault.filter(|f| *f != Fault::EndLost),
            }
        }
        None => fault,
    };
    // A job whose RunTask was denied is denied on every later RunTask too,
    // as a missing permission would be: when the driver could not record
    // the denial (its write failed, say), the job's next try is denied again.
    let run_task_job = (operation == "ecs:RunTask").then(|| run_task_job_of(&body));
    let fault = match &run_task_job {
        Some(job) if shared.denied.lock().expect(POISONED).contains(job) => Some(Fault::Denied),
        _ => fault,
    };
    // Over AWS's rate limit: throttled.
    let fault = match (&shared.limits, fault) {
        (Some(limits), None) if !limits.lock().expect(POISONED).admit(&operation) => {
            Some(Fault::Throttled)
        }
        (_, fault) => fault,
    };
    if let Some(fault) = fault {
        *shared
            .injected
            .lock()
            .expect(POISONED)
            .entry((operation.clone(), fault))
            .or_default() += 1;
        match fault {
            Fault::Throttled | Fault::ServerError | Fault::RequeueLost | Fault::EndLost => {
                shared.counts.add(operation.clone(), Duration::ZERO);
                return Ok(respond(&fault_answer(&operation, fault)));
            }
            Fault::Denied => {
                let job = run_task_job.unwrap_or_else(|| run_task_job_of(&body));
                shared.denied.lock().expect(POISONED).insert(job);
                shared.counts.add(operation.clone(), Duration::ZERO);
                return Ok(respond(&fault_answer(&operation, fault)));
            }
            Fault::Slow => tokio::time::sleep(Duration::from_secs(2)).await,
            Fault::Dropped => {}
        }
    }
    // ECS's idempotency: a RunTask whose client token was answered before
    // gets that answer again.
    let token = (operation == "ecs:RunTask")
        .then(|| {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["clientToken"].as_str().map(str::to_owned))
        })
        .flatten();
    if let Some(answer) = token.as_ref().and_then(|t| {
        shared
            .run_task_tokens
            .lock()
            .expect(POISONED)
            .get(t)
            .cloned()
    }) {
        shared.counts.add(operation, Duration::ZERO);
        return Ok(respond(&answer));
    }

    let replaying = shared.replaying.load(Ordering::SeqCst);
    let replayed = replaying
        .then(|| {
            shared
                .recorded
                .lock()
                .expect(POISONED)
                .get(&operation)
                .cloned()
        })
        .flatten();
    if let Some(recorded) = replayed {
        shared.counts.add(operation, Duration::ZERO);
        return Ok(respond(&recorded));
    }

    let started = Instant::now();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let upstream = match &shared.lambda_upstream {
        Some(l) if operation.starts_with("lambda:") => l,
        _ => &shared.upstream,
    };
    let mut out = shared
        .client
        .request(parts.method.clone(), format!("{upstream}{path}"))
        .body(body);
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
            out = out.header(name, value);
        }
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => {
            let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            return Ok(r);
        }
    };
    let status = answer.status();
    let headers = answer
        .headers()
        .iter()
        .filter(|(name, _)| {
            *name != hyper::header::TRANSFER_ENCODING && *name != hyper::header::CONNECTION
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let body = answer.bytes().await.unwrap_or_default();
    let recorded = Recorded {
        status,
        headers,
        body,
    };
    if replaying && status.is_success() {
        shared
            .recorded
            .lock()
            .expect(POISONED)
            .entry(operation.clone())
            .or_insert_with(|| recorded.clone());
    }
    if let Some(t) = token
        && status.is_success()
    {
        shared
            .run_task_tokens
            .lock()
            .expect(POISONED)
            .insert(t, recorded.clone());
        if let Some(limits) = &shared.limits {
            let started_by = serde_json::from_slice::<serde_json::Value>(&recorded.body)
                .ok()
                .and_then(|v| v["tasks"][0]["startedBy"].as_str().map(str::to_owned));
            if let Some(started_by) = started_by {
                let mut limits = limits.lock().expect(POISONED);
                limits.launched.push((Instant::now(), started_by));
            }
        }
    }
    shared.counts.add(operation, started.elapsed());
    if fault == Some(Fault::Dropped) {
        // Served, and the answer lost on the way back.
        return Err(std::io::Error::other("injected: connection dropped"));
    }
    Ok(respond(&recorded))
}

fn respond(recorded: &Recorded) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(recorded.status);
    for (name, value) in &recorded.headers {
        response = response.header(name, value);
    }
    response
        .body(Full::new(recorded.body.clone()))
        .expect("headers copied from a valid answer")
}

/// The AWS operation of a request, from its target header, its RPC v2 path,
/// its Lambda path or its Query action.
fn operation(parts: &hyper::http::request::Parts, body: &[u8]) -> String {
    if let Some(target) = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        let (service, op) = target.split_once('.').unwrap_or((target, ""));
        let service = match service {
            s if s.starts_with("DynamoDB") => "dynamodb",
            s if s.starts_with("AmazonEC2ContainerService") => "ecs",
            "AmazonSQS" => "sqs",
            other => other,
        };
        return format!("{service}:{op}");
    }
    let path = parts.uri.path();
    if let Some(rest) = path.strip_prefix("/service/") {
        return format!("cloudwatch:{}", rest.rsplit('/').next().unwrap_or(""));
    }
    if path.starts_with("/2015-03-31/functions/") {
        return "lambda:Invoke".into();
    }
    let action = String::from_utf8_lossy(body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action=").map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    // The Query protocol names no service: its signature's scope does
    // (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
    let service = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("query");
    format!("{service}:{action}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback upstream that answers every call 200 `{}`.
    async fn upstream() -> String {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, std::io::Error>(Response::new(Full::new(Bytes::from("{}"))))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    /// At a twentieth of AWS's rates, RunTask takes 5 calls at once, then 1
    /// a second; the call over it gets ECS's throttling answer, and other
    /// operations are not metered.
    #[tokio::test]
    async fn the_limits_throttle_run_task_past_its_scaled_bucket() {
        let faults = Faults {
            rate: 0.0,
            applies: |op| op == "ecs:RunTask",
            limits: Some(0.05),
        };
        let proxy =
            LatencyProxy::start_with(&upstream().await, None, Duration::ZERO, Some(faults)).await;
        let client = reqwest::Client::new();
        let call = |target: &'static str| {
            client
                .post(&proxy.endpoint)
                .header("x-amz-target", target)
                .body("{}")
                .send()
        };
        let run_task = "AmazonEC2ContainerServiceV20141113.RunTask";
        for i in 0..5 {
            assert_eq!(call(run_task).await.unwrap().status(), 200, "call {i}");
        }
        let throttled = call(run_task).await.unwrap();
        assert_eq!(throttled.status(), 400);
        assert!(
            throttled
                .text()
                .await
                .unwrap()
                .contains("ThrottlingException")
        );
        let other = call("AmazonEC2ContainerServiceV20141113.ListTasks");
        assert_eq!(other.await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(call(run_task).await.unwrap().status(), 200, "refilled");
        assert_eq!(
            proxy
                .injected()
                .get(&("ecs:RunTask".to_owned(), Fault::Throttled)),
            Some(&1)
        );
    }
}
