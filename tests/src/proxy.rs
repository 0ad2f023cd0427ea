//! A loopback HTTP proxy in front of the local AWS that delays every call by
//! a fixed latency (like a real round trip to AWS) and counts the calls per
//! operation. Benchmarks point their clients at it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Calls seen, by operation (`dynamodb:PutItem`, `ecs:RunTask`, ...).
#[derive(Debug, Default)]
pub struct CallCounts(Mutex<BTreeMap<String, u64>>);

impl CallCounts {
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    fn add(&self, operation: String) {
        *self.0.lock().unwrap().entry(operation).or_default() += 1;
    }
}

pub struct LatencyProxy {
    pub endpoint: String,
    pub calls: Arc<CallCounts>,
}

impl LatencyProxy {
    /// Serves on a free loopback port, forwarding to `upstream` (an
    /// `http://` loopback URL) after `latency`.
    pub async fn start(upstream: &str, latency: Duration) -> Self {
        crate::assert_loopback(upstream);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let calls = Arc::new(CallCounts::default());
        let client = reqwest::Client::new();
        let upstream = upstream.trim_end_matches('/').to_owned();
        let counts = calls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (client, upstream, counts) = (client.clone(), upstream.clone(), counts.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        forward(
                            req,
                            client.clone(),
                            upstream.clone(),
                            counts.clone(),
                            latency,
                        )
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            endpoint: format!("http://{addr}"),
            calls,
        }
    }
}

async fn forward(
    req: Request<Incoming>,
    client: reqwest::Client,
    upstream: String,
    counts: Arc<CallCounts>,
    latency: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    counts.add(operation(&parts, &body));
    tokio::time::sleep(latency).await;

    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = client
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
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != hyper::header::TRANSFER_ENCODING && name != hyper::header::CONNECTION {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    Ok(response.body(Full::new(bytes)).unwrap())
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
