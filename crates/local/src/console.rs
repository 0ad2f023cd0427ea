//! The local run's web console: `berth console` on the run's stack, started
//! with it, its URL printed (docs/console.md).

use crate::{Fallible, Local};

/// Starts the console on a free loopback port, for as long as the process
/// runs; the URL to open, with its token.
pub async fn start(local: &Local) -> Fallible<String> {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| format!("console: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("console: {e}"))?;
    let token = berth_cli::console::token();
    let berth = berth_cli::Berth::new(local.settings.clone(), local.clients.clone());
    let (logs, served) = (local.job_logs.clone(), token.clone());
    tokio::spawn(async move {
        if let Err(e) = berth_cli::console::serve(berth, logs, listener, &served).await {
            eprintln!("berth-local: {e}");
        }
    });
    Ok(berth_cli::console::url(addr, &token))
}
