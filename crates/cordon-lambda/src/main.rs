//! `bootstrap`: the Lambda's entry point. Builds the clients and the handler
//! once per container, then serves invocations (see the library).

use cordon_aws::client::AwsClients;
use cordon_lambda::{Config, Handler};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time()
        .with_writer(std::io::stderr)
        .init();
    let config = Config::from_env()?;
    let clients = AwsClients::from_env().await?;
    let handler = Handler::new(clients, config)?;
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler.handle(event.payload).await
    }))
    .await
}
