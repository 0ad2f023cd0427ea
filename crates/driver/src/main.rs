//! berth-driver: the SQS-triggered Lambda that validates, records, routes and
//! dispatches jobs. Wiring only; the handler is in the library.

use berth_driver::{Driver, Tuning};
use lambda_runtime::{Error, run, service_fn, tracing};

#[global_allocator]
static ALLOCATOR: berth_aws::Allocator = berth_aws::Allocator;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = berth_aws::Settings::from_env()?;
    let clients = berth_aws::Clients::new(&berth_driver::sdk_config().await);
    let driver = Driver::new(&settings, &clients, Tuning::default());
    run(service_fn(|event| driver.handle(event))).await
}
