//! An SQS client for the tests' moto, shared by the engine's tests and
//! benchmarks.

/// An SQS client for an endpoint URL (moto) with moto's static credentials,
/// independent of the process environment.
pub fn sqs_client_at(endpoint: &str) -> aws_sdk_sqs::Client {
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(harness::REGION))
        .credentials_provider(Credentials::new(
            harness::ACCESS_KEY_ID,
            harness::SECRET_ACCESS_KEY,
            None,
            None,
            "moto",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}
