//! A loopback HTTP proxy in front of the local AWS that delays every call by
//! a fixed latency (like a real round trip to AWS) and counts the calls per
//! operation. Benchmarks point their clients at it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    fn add(&self, operation: String, upstream: Duration) {
        let mut calls = self.0.lock().unwrap();
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
        crate::assert_loopback(upstream);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let calls = Arc::new(CallCounts::default());
        let shared = Arc::new(Shared {
            client: reqwest::Client::new(),
            upstream: upstream.trim_end_matches('/').to_owned(),
            counts: calls.clone(),
            latency,
            replaying: AtomicBool::new(false),
            recorded: Mutex::new(BTreeMap::new()),
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
}

async fn forward(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let operation = operation(&parts, &body);
    tokio::time::sleep(shared.latency).await;

    let replaying = shared.replaying.load(Ordering::SeqCst);
    let replayed = replaying
        .then(|| shared.recorded.lock().unwrap().get(&operation).cloned())
        .flatten();
    if let Some(recorded) = replayed {
        shared.counts.add(operation, Duration::ZERO);
        return Ok(respond(&recorded));
    }

    let started = Instant::now();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = shared
        .client
        .request(parts.method.clone(), format!("{}{path}", shared.upstream))
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
            .unwrap()
            .entry(operation.clone())
            .or_insert_with(|| recorded.clone());
    }
    shared.counts.add(operation, started.elapsed());
    Ok(respond(&recorded))
}

fn respond(recorded: &Recorded) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(recorded.status);
    for (name, value) in &recorded.headers {
        response = response.header(name, value);
    }
    response.body(Full::new(recorded.body.clone())).unwrap()
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
    format!("query:{action}")
}
