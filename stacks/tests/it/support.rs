//! What the stacks tests share: the example spec, moto and clients pointed
//! at it, and a progress recorder.

use std::path::PathBuf;

use stacks::local::{Progress, ProgressEvent};
use stacks::spec::{LoadedSpec, Spec};

/// `examples/aws.yaml` with no variables: the example's defaults (stack
/// `reference`, us-east-1).
pub fn example_loaded() -> LoadedSpec {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/aws.yaml");
    stacks::spec::load_with_env(&path, &|_| None).expect("examples/aws.yaml loads")
}

/// The spec of [`example_loaded`].
pub fn example() -> Spec {
    example_loaded().spec
}

/// Records progress events, so tests can check what was reported.
#[derive(Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<ProgressEvent>>);

impl Progress for Recorder {
    fn report(&self, event: ProgressEvent) {
        self.0.lock().unwrap().push(event);
    }
}

#[cfg(feature = "aws")]
pub use aws::*;

#[cfg(feature = "aws")]
mod aws {
    use aws_config::BehaviorVersion;
    use aws_sdk_sts::config::Credentials;
    use harness::Moto;
    use stacks::aws::{self, ApplyOptions, ApplyReport, Aws, AwsPlan, Inputs};
    use stacks::graph::Graph;

    /// A moto server of the test's own.
    pub fn start_moto() -> Moto {
        Moto::start().expect("moto_server starts (run scripts/test to install it)")
    }

    /// The provider's AWS context on `endpoint` (moto, or a proxy in front).
    pub async fn connect(endpoint: &str) -> Aws {
        Aws::with_endpoint(
            endpoint,
            harness::REGION,
            harness::ACCESS_KEY_ID,
            harness::SECRET_ACCESS_KEY,
        )
        .await
        .expect("AWS context")
    }

    /// Applies `plan` with the default options and no progress output.
    pub async fn apply_plan(aws: &Aws, plan: &AwsPlan) -> ApplyReport {
        aws::apply(aws, plan, &ApplyOptions::default(), &stacks::local::Silent)
            .await
            .unwrap_or_else(|e| panic!("apply failed: {e}"))
    }

    /// Converged: planning `graph` again finds no change, and applying that
    /// plan writes nothing.
    pub async fn assert_converged(aws: &Aws, graph: &Graph, inputs: &Inputs) {
        let again = aws::plan(aws, graph, inputs).await.expect("plan");
        assert!(!again.plan.has_changes(), "{}", again.plan.render_text());
        let before = aws.calls().writes;
        apply_plan(aws, &again).await;
        assert_eq!(
            aws.calls().writes,
            before,
            "{:?}",
            aws.calls().write_operations()
        );
    }

    /// Plain SDK configuration for independent checks against `endpoint`.
    pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(harness::REGION))
            .credentials_provider(Credentials::new(
                harness::ACCESS_KEY_ID,
                harness::SECRET_ACCESS_KEY,
                None,
                None,
                "test",
            ))
            .load()
            .await
    }
}
