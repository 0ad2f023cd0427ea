//! A Lambda function for tests run under `cargo lambda watch`: it writes each
//! event it receives to a file in `BERTH_TEST_RECORDER_DIR`, so a test can see
//! that an invoke reached a real function and what it carried.

use lambda_runtime::{Error, LambdaEvent, run, service_fn, tracing};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let dir = std::env::var("BERTH_TEST_RECORDER_DIR")?;
    run(service_fn(|event: LambdaEvent<Value>| {
        let dir = dir.clone();
        async move {
            let path =
                std::path::Path::new(&dir).join(format!("{}.json", event.context.request_id));
            std::fs::write(path, event.payload.to_string())?;
            Ok::<Value, Error>(Value::Null)
        }
    }))
    .await
}
