//! `berth console` in a real browser: headless Chromium from Debian's
//! packages (`chromium`, `chromium-driver`; `make browser` installs them),
//! driven through WebDriver by fantoccini, against the console of a stack
//! on the local AWS. The browser may reach 127.0.0.1 only.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_core::JobStatus;
use berth_tests::stack::Stack;

use crate::console::{console, three_jobs};
use fantoccini::{Client, ClientBuilder, Locator};

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

#[tokio::test]
async fn the_console_in_chromium_jobs_a_job_and_cancel() {
    let stack = Stack::new(1).await;
    three_jobs(&stack).await;
    let (addr, token) = console(&stack).await;

    let driver = Driver::start();
    let client = browser(&driver).await;
    // Without the token: refused.
    client.goto(&format!("http://{addr}/jobs")).await.unwrap();
    text(&client, "h1", "Refused").await;
    // The printed URL: the jobs, the token gone from the address.
    client
        .goto(&berth_cli::console::url(addr, &token))
        .await
        .unwrap();
    assert_eq!(
        client.current_url().await.unwrap().as_str(),
        format!("http://{addr}/jobs")
    );
    text_when(&client, "table", |t| {
        ["fine", "doomed", "gpu-waits"]
            .iter()
            .all(|id| t.contains(id))
    })
    .await;
    // Filter FAILED with the form, as a person would.
    client
        .find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value("FAILED")
        .await
        .unwrap();
    client
        .find(Locator::Css("form[aria-label='Filter the jobs'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&client, "table", |t| {
        t.contains("doomed") && !t.contains("gpu-waits")
    })
    .await;
    // Open it: its attempts.
    client
        .find(Locator::LinkText("doomed"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text(&client, "h1", "Job doomed").await;
    text_when(&client, "table", |t| t.contains("exit code 3")).await;
    // Cancel the waiting job: asked, confirmed, ended.
    client
        .goto(&format!("http://{addr}/jobs/gpu-waits"))
        .await
        .unwrap();
    text(&client, "h1", "Job gpu-waits").await;
    client
        .find(Locator::LinkText("Cancel this job…"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text(&client, "h1", "Cancel job gpu-waits?").await;
    client
        .find(Locator::Css("button.danger"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text(&client, ".lead .status", "CANCELLED").await;
    assert_eq!(stack.record("gpu-waits").await.status, JobStatus::Cancelled);
    client.close().await.unwrap();
}
