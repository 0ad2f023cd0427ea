//! `berth console` over HTTP against the local AWS: who may use it, the
//! jobs list with its filters and pages, a job's attempts, and Cancel.

use berth_core::JobStatus;
use berth_tests::stack::Stack;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};

/// Jobs of every kind on a stack with one instance: `fine` succeeds,
/// `doomed` fails (exit code 3), `gpu-waits` waits for a GPU instance.
pub(crate) async fn three_jobs(stack: &Stack) {
    stack
        .send(&[
            r#"{"job_id":"fine","definition":"render"}"#,
            r#"{"job_id":"doomed","definition":"render","max_attempts":1}"#,
            r#"{"job_id":"gpu-waits","definition":"train"}"#,
        ])
        .await;
    stack.deliver(&stack.driver(), stack.receive().await).await;
    let lifecycle = stack.lifecycle();
    for (job, code) in [("fine", 0), ("doomed", 3)] {
        lifecycle
            .task_changed(&stack.task_exited(job, 1, code).await)
            .await
            .unwrap();
    }
}

/// The console of `stack` on a free loopback port: its address and token.
pub(crate) async fn console(stack: &Stack) -> (std::net::SocketAddr, String) {
    console_of(stack, stack.cli()).await
}

/// As [`console`], with the CLI's view of the stack `berth`.
pub(crate) async fn console_of(
    stack: &Stack,
    berth: berth_cli::Berth,
) -> (std::net::SocketAddr, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = berth_cli::console::token();
    let logs = berth_aws::logs::JobLogs::from_config(&stack.aws.sdk_config);
    let t = token.clone();
    tokio::spawn(async move { berth_cli::console::serve(berth, logs, listener, &t).await });
    (addr, token)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The page at `path` with the console's cookie: its status and text.
pub(crate) async fn get(
    addr: std::net::SocketAddr,
    cookie: &str,
    path: &str,
) -> (StatusCode, String) {
    let r = client()
        .get(format!("http://{addr}{path}"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The cookie the console sets for the URL it printed, after checking the
/// redirect strips the token from the address.
pub(crate) async fn sign_in(addr: std::net::SocketAddr, token: &str) -> String {
    let url = berth_cli::console::url(addr, token);
    let r = client()
        .get(format!("{url}&status=FAILED"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/jobs?status=FAILED");
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn only_the_printed_url_opens_it_and_never_from_another_site() {
    let stack = Stack::new(0).await;
    let (addr, token) = console(&stack).await;
    let url = format!("http://{addr}/jobs");
    // No token, a wrong one, a wrong cookie.
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("token"));
    let wrong = format!("{url}?token={}", berth_cli::console::token());
    assert_eq!(
        client().get(&wrong).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let (status, _) = get(addr, "berth_console=guess", "/jobs").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The token's cookie opens it...
    let cookie = sign_in(addr, &token).await;
    let (status, page) = get(addr, &cookie, "/jobs").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<h1>Jobs</h1>"), "{page}");
    // ...but not under another host name (DNS rebinding), nor from
    // another site.
    let r = client()
        .get(&url)
        .header(COOKIE, &cookie)
        .header(HOST, "attacker.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client()
        .get(&url)
        .header(COOKIE, &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A form only from its own pages.
    let cancel = format!("http://{addr}/jobs/any/cancel");
    for origin in [None, Some("http://attacker.example")] {
        let mut r = client()
            .post(&cancel)
            .header(COOKIE, &cookie)
            .form(&[("confirm", "yes")]);
        if let Some(origin) = origin {
            r = r.header(ORIGIN, origin);
        }
        assert_eq!(
            r.send().await.unwrap().status(),
            StatusCode::FORBIDDEN,
            "{origin:?}"
        );
    }
}

#[tokio::test]
async fn jobs_filtered_and_paged_a_job_s_attempts_and_cancel() {
    let stack = Stack::new(1).await;
    // Jobs of every kind, and enough to fill more than a page.
    three_jobs(&stack).await;
    assert_eq!(stack.record("doomed").await.status, JobStatus::Failed);
    assert_eq!(
        stack.record("gpu-waits").await.status,
        JobStatus::WaitingForCapacity
    );
    let more: Vec<String> = (0..55)
        .map(|i| format!(r#"{{"job_id":"many-{i:02}","definition":"render"}}"#))
        .collect();
    for chunk in more.chunks(10) {
        let bodies: Vec<&str> = chunk.iter().map(String::as_str).collect();
        stack.send(&bodies).await;
        while !stack.drive().await.is_empty() {}
    }

    let (addr, token) = console(&stack).await;
    let cookie = sign_in(addr, &token).await;

    // FAILED only.
    let (status, page) = get(addr, &cookie, "/jobs?status=FAILED").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"href="/jobs/doomed""#), "{page}");
    assert!(!page.contains(r#"href="/jobs/fine""#), "{page}");
    assert!(page.contains("exit code 3"), "{page}");

    // Every job, newest change first, a page at a time: none twice, none
    // missed.
    let mut seen = Vec::new();
    let mut path = "/jobs".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = get(addr, &cookie, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for row in page.split(r#"<th scope="row"><a href="/jobs/"#).skip(1) {
            seen.push(row.split('"').next().unwrap().to_owned());
        }
        match page.split(r#"<a rel="next" href=""#).nth(1) {
            Some(rest) => path = rest.split('"').next().unwrap().replace("&amp;", "&"),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((pages, seen.len(), unique.len()), (2, 58, 58), "{seen:?}");
    assert!(unique.iter().any(|id| id == "gpu-waits"));

    // A bad filter says what is wrong; an id opens its job.
    let (status, page) = get(addr, &cookie, "/jobs?status=DONE").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("no status `DONE`"), "{page}");
    let r = client()
        .get(format!("http://{addr}/jobs?id=doomed"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/jobs/doomed");

    // A job: its attempts, and no Cancel once it has ended.
    let (status, page) = get(addr, &cookie, "/jobs/doomed").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Attempts") && page.contains("exit code 3"),
        "{page}"
    );
    assert!(!page.contains("/jobs/doomed/cancel"), "{page}");
    let (status, _) = get(addr, &cookie, "/jobs/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Cancel a waiting job: asked first, then done.
    let (_, page) = get(addr, &cookie, "/jobs/gpu-waits").await;
    assert!(page.contains(r#"href="/jobs/gpu-waits/cancel""#), "{page}");
    let (status, page) = get(addr, &cookie, "/jobs/gpu-waits/cancel").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Yes, cancel gpu-waits"), "{page}");
    assert_eq!(
        stack.record("gpu-waits").await.status,
        JobStatus::WaitingForCapacity,
        "asking is not cancelling"
    );
    let r = client()
        .post(format!("http://{addr}/jobs/gpu-waits/cancel"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, format!("http://{addr}"))
        .form(&[("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(stack.record("gpu-waits").await.status, JobStatus::Cancelled);
    let (_, page) = get(addr, &cookie, "/jobs/gpu-waits").await;
    assert!(page.contains("CANCELLED"), "{page}");
}

/// The next server-sent event named `name` on `events`: its data.
async fn next_event(events: &mut reqwest::Response, buffer: &mut String, name: &str) -> String {
    let wait = async {
        loop {
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event: ") {
                        event = e;
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push(d);
                    }
                }
                if event == name {
                    return data.join("\n");
                }
            }
            let chunk = events.chunk().await.unwrap().expect("the events go on");
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("no `{name}` event in 30 s; buffered: {buffer}"))
}

#[tokio::test]
async fn tags_times_counts_and_the_live_list_and_job() {
    let stack = Stack::new(1).await;
    three_jobs(&stack).await;
    stack
        .send(&[
            r#"{"job_id":"team-a-1","definition":"render","tags":{"team":"a"}}"#,
            r#"{"job_id":"team-a-2","definition":"render","tags":{"team":"a","size":"big"}}"#,
            r#"{"job_id":"team-b-1","definition":"render","tags":{"team":"b"}}"#,
        ])
        .await;
    while !stack.drive().await.is_empty() {}
    let (addr, token) = console(&stack).await;
    let cookie = sign_in(addr, &token).await;
    let rows = |page: &str| -> Vec<String> {
        let mut ids: Vec<String> = page
            .split(r#"<th scope="row"><a href="/jobs/"#)
            .skip(1)
            .map(|row| row.split('"').next().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };

    // A tag, alone and with another filter.
    let (status, page) = get(addr, &cookie, "/jobs?tag=team%3Da").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(rows(&page), ["team-a-1", "team-a-2"], "{page}");
    let (_, page) = get(addr, &cookie, "/jobs?tag=size%3Dbig&definition=render").await;
    assert_eq!(rows(&page), ["team-a-2"]);
    let (status, page) = get(addr, &cookie, "/jobs?tag=team").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("give it as KEY=VALUE"), "{page}");

    // Times: the last hour holds all six; until a day long past, none.
    let (_, page) = get(addr, &cookie, "/jobs?since=1h").await;
    assert_eq!(rows(&page).len(), 6, "{page}");
    let (_, page) = get(addr, &cookie, "/jobs?until=2020-01-01").await;
    assert!(
        rows(&page).is_empty() && page.contains("No job matches."),
        "{page}"
    );
    let (status, page) = get(addr, &cookie, "/jobs?since=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");

    // The list's first page is live: counts at once, then rows when a job
    // changes.
    let (_, page) = get(addr, &cookie, "/jobs").await;
    let events_path = page
        .split(r#"data-events=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        page.contains(r#"<script src="/console.js" defer>"#),
        "{page}"
    );
    let mut events = client()
        .get(format!("http://{addr}{events_path}"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let counts: serde_json::Value =
        serde_json::from_str(&next_event(&mut events, &mut buffer, "counts").await).unwrap();
    assert_eq!(counts["FAILED"], 1, "{counts}");
    assert_eq!(counts["SUCCEEDED"], 1, "{counts}");
    assert_eq!(counts["WAITING_FOR_CAPACITY"], 1, "{counts}");
    assert_eq!(counts["DISPATCHED"], 3, "{counts}");
    let lifecycle = stack.lifecycle();
    lifecycle
        .task_changed(&stack.task_exited("team-b-1", 1, 0).await)
        .await
        .unwrap();
    let rows_html = next_event(&mut events, &mut buffer, "rows").await;
    assert!(
        rows_html.starts_with("<tr>") && rows_html.contains(r#"href="/jobs/team-b-1""#),
        "{rows_html}"
    );
    let counts: serde_json::Value =
        serde_json::from_str(&next_event(&mut events, &mut buffer, "counts").await).unwrap();
    assert_eq!(
        (counts["SUCCEEDED"].as_u64(), counts["DISPATCHED"].as_u64()),
        (Some(2), Some(2)),
        "{counts}"
    );

    // A job's page follows it to its end.
    let mut events = client()
        .get(format!("http://{addr}/jobs/gpu-waits/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    let facts = next_event(&mut events, &mut buffer, "job").await;
    assert!(facts.contains("WAITING_FOR_CAPACITY"), "{facts}");
    stack.cli().cancel("gpu-waits", None).await.unwrap();
    let facts = next_event(&mut events, &mut buffer, "job").await;
    assert!(facts.contains("CANCELLED"), "{facts}");
    next_event(&mut events, &mut buffer, "end").await;
    assert!(
        events.chunk().await.unwrap().is_none(),
        "the events end with the job"
    );
}

#[tokio::test]
async fn the_cost_view_replays_the_jobs_and_the_simulate_view_runs_a_trace() {
    let stack = Stack::new(1).await;
    three_jobs(&stack).await;
    let (addr, token) = console(&stack).await;
    let cookie = sign_in(addr, &token).await;

    // What the attempts cost, by definition: the records' total.
    let mut total = 0.0;
    for id in ["fine", "doomed", "gpu-waits"] {
        total += stack.record(id).await.cost_usd.unwrap_or(0.0);
    }
    let (status, page) = get(addr, &cookie, "/cost?since=1h&by=definition").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains(&format!("${total:.4} for ")),
        "{total}: {page}"
    );
    assert!(page.contains(r#"name="replay" value="on""#), "{page}");
    let (status, page) = get(addr, &cookie, "/cost?since=yesterday-ish").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");

    // The same jobs in the simulator: the two that ran and ended, under
    // each policy; the waiting one left out.
    let (status, page) = get(addr, &cookie, "/cost?since=1h&by=day&replay=on").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("2 job(s) over 1 day(s)"), "{page}");
    assert!(page.contains("1 left out"), "{page}");
    for policy in berth_cli::console::cost::REPLAY_POLICIES {
        assert!(
            page.contains(&format!(r#"<th scope="row">{policy}</th>"#)),
            "{policy}: {page}"
        );
    }

    // A built-in trace by its URL: the table and the plot.
    let (status, page) = get(addr, &cookie, "/simulate").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"value="burst-10k""#), "{page}");
    let (status, page) = get(
        addr,
        &cookie,
        "/simulate?trace=sparse-day&jobs=30&policy=berth&policy=all-fargate-spot&seed=2&limits=on",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("berth simulate --trace sparse-day (seed 2): 30 jobs"),
        "{page}"
    );
    assert!(
        page.contains(r#"<th scope="row">all-fargate-spot</th>"#),
        "{page}"
    );
    assert!(
        !page.contains(r#"<th scope="row">aws-batch</th>"#),
        "{page}"
    );
    assert!(page.contains("<svg"), "{page}");

    // A CSV of one's own, uploaded; a bad one says its row.
    let upload = |csv: &'static str| {
        let form = reqwest::multipart::Form::new()
            .part(
                "csv",
                reqwest::multipart::Part::text(csv).file_name("mine.csv"),
            )
            .text("policy", "berth")
            .text("seed", "1");
        client()
            .post(format!("http://{addr}/simulate"))
            .header(COOKIE, &cookie)
            .header(ORIGIN, format!("http://{addr}"))
            .multipart(form)
            .send()
    };
    let r = upload(
        "submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n\
         10,render,1024,2048,0,120,600,false,true\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("--trace mine (seed 1): 1 jobs"), "{page}");
    let r = upload("submit_s,definition\nsoon,render\n").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("row"));
}
