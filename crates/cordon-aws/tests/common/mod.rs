//! Set-up shared by the tests that answer AWS with the SDK's mocks.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use cordon_aws::client::AwsClients;

/// Real clients whose endpoint is a closed local port, so nothing can reach
/// AWS by mistake; a test swaps in the mocked client it needs.
pub fn offline_clients() -> AwsClients {
    let config = SdkConfig::builder()
        .endpoint_url("http://127.0.0.1:9")
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        )))
        .build();
    AwsClients::builder(&config)
        .build()
        .expect("a region is configured")
}
