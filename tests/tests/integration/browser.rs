//! `berth console` in a real browser: headless Chromium from Debian's
//! packages (`chromium`, `chromium-driver`; `make browser` installs them),
//! driven through WebDriver by fantoccini, against the console of the
//! demo's local run. The browser may reach 127.0.0.1 only.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::local_run::Run;

/// chromedriver on a free port, in a process group of its own with the
/// browsers it starts: all stopped when dropped, by that group's id.
struct Driver(Child, u16);

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; `make browser` installs it)");
        Self(child, port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(id) = i32::try_from(self.0.id()) {
            let group = nix::unistd::Pid::from_raw(id);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// A headless Chromium session whose every host name but 127.0.0.1 fails
/// to resolve, with nothing in the background that calls out.
async fn browser(driver: &Driver) -> Client {
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--disable-domain-reliability",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1280,800",
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "args": args, "binary": "/usr/bin/chromium" }),
    );
    let url = format!("http://127.0.0.1:{}", driver.1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        match builder.capabilities(caps.clone()).connect(&url).await {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    }
}

/// The text of the first element `css` finds once it holds what `until`
/// asks (within 10 s: a click's page loads meanwhile).
async fn text_when(client: &Client, css: &str, until: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = match client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.ok(),
            Err(_) => None,
        };
        match found {
            Some(text) if until(&text) => return text,
            found if Instant::now() > deadline => {
                let page = client.source().await.unwrap_or_default();
                panic!("{css}: {found:?} in {page}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn text(client: &Client, css: &str, expected: &str) {
    text_when(client, css, |t| t == expected).await;
}

/// Writes a PNG of what the browser shows to `$BERTH_SCREENSHOTS/NAME.png`
/// when that variable names a directory (`make screenshots`).
async fn screenshot(client: &Client, name: &str) {
    let Some(dir) = std::env::var_os("BERTH_SCREENSHOTS") else {
        return;
    };
    let png = client.screenshot().await.unwrap();
    let path = std::path::Path::new(&dir).join(format!("{name}.png"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

async fn click(client: &Client, locator: Locator<'_>) {
    client.find(locator).await.unwrap().click().await.unwrap();
}

/// The console of `berth-local demo` in Chromium, as a person uses it:
/// refused without its token; the cluster view while the scaler starts an
/// instance; the demo's jobs, counted; FAILED alone; a job's attempts and
/// output; a waiting job cancelled.
#[tokio::test]
async fn the_console_in_chromium_on_the_demo() {
    let _aws = berth_tests::local_aws();
    // Instances take 20 s to register: time to see one launching.
    let mut demo = Run::spawn(&["demo", "--stay", "--boot", "20"]);
    let mut stopping = Stopping(Some(demo.pid()));
    let said = demo.read_until(
        |l| l.starts_with("the jobs in a browser, while the demo runs: "),
        Duration::from_secs(300),
    );
    let url = said
        .as_deref()
        .and_then(|l| l.split_once(": "))
        .map(|(_, url)| url.to_owned())
        .unwrap_or_else(|| panic!("no console URL:\n{}", demo.said()));
    let origin = url.split("/jobs").next().unwrap().to_owned();

    let driver = Driver::start();
    let client = browser(&driver).await;
    // Without the token: refused.
    client.goto(&format!("{origin}/jobs")).await.unwrap();
    text(&client, "h1", "Refused").await;
    // The printed URL: the jobs, the token gone from the address.
    client.goto(&url).await.unwrap();
    assert_eq!(
        client.current_url().await.unwrap().as_str(),
        format!("{origin}/jobs")
    );

    // The cluster while the scaler starts an instance for the EC2-only job.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        client.goto(&format!("{origin}/cluster")).await.unwrap();
        let page = client.source().await.unwrap();
        if page.contains("started by the group, not yet registered") {
            assert!(page.contains("job(s) waiting for capacity"), "{page}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no instance seen launching in 3 minutes: {page}\n{}",
            demo.said()
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    text_when(&client, "#launching + ul", |t| {
        t.contains("not yet registered")
    })
    .await;
    screenshot(&client, "cluster").await;

    // The demo's jobs, once it has checked them.
    demo.read_until(|l| l == "ready", Duration::from_secs(480))
        .unwrap_or_else(|| panic!("the demo did not end:\n{}", demo.said()));
    let exports = demo.exports.clone();
    client.goto(&format!("{origin}/jobs")).await.unwrap();
    text_when(&client, "table", |t| {
        [
            "thumb-1",
            "reindex-1",
            "huge-1",
            "render-9",
            "fail-1",
            "captions",
        ]
        .iter()
        .all(|id| t.contains(id))
    })
    .await;
    // The counts come live.
    text_when(&client, "[data-count=SUCCEEDED]", |t| {
        t.parse::<u32>().is_ok_and(|n| n >= 10)
    })
    .await;
    text(&client, "[data-count=FAILED]", "1").await;
    screenshot(&client, "jobs").await;

    // Filter FAILED with the form, as a person would.
    client
        .find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value("FAILED")
        .await
        .unwrap();
    click(
        &client,
        Locator::Css("form[aria-label='Filter the jobs'] button"),
    )
    .await;
    text_when(&client, "table", |t| {
        t.contains("fail-1") && !t.contains("thumb-1")
    })
    .await;
    // Open it: its attempts and what it printed.
    click(&client, Locator::LinkText("fail-1")).await;
    text(&client, "h1", "Job fail-1").await;
    text(&client, ".lead .status", "FAILED").await;
    text_when(&client, "#attempts + div table", |t| {
        t.contains("Exit code")
    })
    .await;
    text_when(&client, "pre", |t| !t.trim().is_empty()).await;
    screenshot(&client, "job").await;

    // A job waiting for another (which runs ten minutes): cancelled here.
    for args in [
        &[
            "submit",
            "--definition",
            "render",
            "--job-id",
            "sleeper",
            "--env",
            "PLAY_SECONDS=600",
        ][..],
        &[
            "submit",
            "--definition",
            "thumbnail",
            "--job-id",
            "waiter",
            "--env",
            "INPUT=x",
            "--depends-on",
            "sleeper",
        ][..],
    ] {
        let (code, out, err) = crate::local_run::berth_with(&exports, args);
        assert_eq!(code, Some(0), "{out}{err}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        client.goto(&format!("{origin}/jobs/waiter")).await.unwrap();
        if client.source().await.unwrap().contains("Cancel this job") {
            break;
        }
        assert!(Instant::now() < deadline, "waiter never recorded");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    text(&client, ".lead .status", "PENDING").await;
    click(&client, Locator::LinkText("Cancel this job…")).await;
    text(&client, "h1", "Cancel job waiter?").await;
    click(&client, Locator::Css("button.danger")).await;
    text(&client, ".lead .status", "CANCELLED").await;
    let (_, status, _) =
        crate::local_run::berth_with(&exports, &["--output", "json", "status", "waiter"]);
    assert!(status.contains("\"CANCELLED\""), "{status}");
    crate::local_run::berth_with(&exports, &["cancel", "sleeper"]);

    // The simulator from its form: a built-in trace, then a CSV uploaded.
    client.goto(&format!("{origin}/simulate")).await.unwrap();
    client
        .find(Locator::Css("input[name=jobs]"))
        .await
        .unwrap()
        .send_keys("30")
        .await
        .unwrap();
    click(&client, Locator::Css("button[formmethod=get]")).await;
    text_when(&client, "#answer", |t| {
        t.ends_with("sparse-day (seed 1): 30 jobs")
    })
    .await;
    text_when(&client, "#answer + div table", |t| {
        t.contains("all-fargate-spot")
    })
    .await;
    let csv = std::env::temp_dir().join(format!("berth-browser-{}.csv", std::process::id()));
    std::fs::write(
        &csv,
        "submit_s,definition,cpu,memory,gpu,duration_s,timeout_s,lambda,fargate\n\
         10,render,1024,2048,0,120,600,false,true\n",
    )
    .unwrap();
    client
        .find(Locator::Css("input[name=csv]"))
        .await
        .unwrap()
        .send_keys(&csv.to_string_lossy())
        .await
        .unwrap();
    click(&client, Locator::Css("form.sim button:not([formmethod])")).await;
    let stem = csv.file_stem().unwrap().to_string_lossy().into_owned();
    text_when(&client, "#answer", |t| {
        t.contains(&format!("--trace {stem} (seed 1): 1 jobs"))
    })
    .await;
    let _ = std::fs::remove_file(&csv);

    // The other views, for the screenshots.
    if std::env::var_os("BERTH_SCREENSHOTS").is_some() {
        client
            .goto(&format!("{origin}/cluster#metrics"))
            .await
            .unwrap();
        text_when(&client, "#decisions + div table", |t| {
            t.contains("add 1 instance")
        })
        .await;
        screenshot(&client, "cluster-metrics").await;
        client
            .goto(&format!("{origin}/cost?since=1d&by=definition&replay=on"))
            .await
            .unwrap();
        text_when(&client, "#replay + p", |t| t.contains("job(s) over")).await;
        screenshot(&client, "cost").await;
        client
            .goto(&format!(
                "{origin}/simulate?trace=sparse-day&policy=berth&policy=all-fargate-spot&policy=aws-batch&seed=1&limits=on#answer"
            ))
            .await
            .unwrap();
        text_when(&client, "#answer", |t| t.contains("sparse-day")).await;
        screenshot(&client, "simulate").await;
        client.set_window_size(390, 844).await.unwrap();
        client.goto(&format!("{origin}/jobs")).await.unwrap();
        text_when(&client, "[data-count=SUCCEEDED]", |t| {
            t.parse::<u32>().is_ok()
        })
        .await;
        screenshot(&client, "jobs-phone").await;
    }
    client.close().await.unwrap();
    stopping.0 = None;
    demo.stop();
}

/// A run a failing test leaves is stopped all the same (SIGTERM: it stops
/// what it started).
struct Stopping(Option<u32>);

impl Drop for Stopping {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}
