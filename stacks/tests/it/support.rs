//! What the stacks tests share: the example spec (also as a copy with
//! another connection type), moto and clients pointed at it, planning and
//! applying a spec on it, and a progress recorder.

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
    use stacks::graph::plan::Action;
    use stacks::graph::{Graph, LogicalId};
    use stacks::spec::{LoadedSpec, Spec};
    use std::path::{Path, PathBuf};

    /// A moto server of the test's own.
    pub fn start_moto() -> Moto {
        Moto::start().expect("moto_server starts (run scripts/test to install it)")
    }

    /// A moto server of the test's own (started off the async workers) and
    /// the provider's AWS context on it.
    pub async fn moto_and_aws() -> (Moto, Aws) {
        let moto = tokio::task::spawn_blocking(start_moto).await.unwrap();
        let aws = connect(&moto.endpoint()).await;
        (moto, aws)
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

    /// The plan for the graph of `spec` (inline functions only) with no
    /// built image.
    pub async fn plan_spec(aws: &Aws, spec: &Spec) -> AwsPlan {
        let graph = Graph::from_spec(spec).expect("graph");
        aws::plan(aws, &graph, &Inputs::from_spec(spec, None))
            .await
            .expect("plan")
    }

    /// `up` without progress output: plans `spec` and applies the plan.
    pub async fn up(aws: &Aws, spec: &Spec) -> ApplyReport {
        apply_plan(aws, &plan_spec(aws, spec).await).await
    }

    /// The action `plan` has for the resource `id`, and the attributes it
    /// changes.
    pub fn planned(plan: &AwsPlan, id: &str) -> (Action, Vec<String>) {
        plan.plan
            .changes
            .iter()
            .find(|c| c.resource.id == LogicalId::new(id))
            .map(|c| (c.action, c.changed_attributes.clone()))
            .unwrap_or_else(|| panic!("{id} not planned"))
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

    /// `examples/aws.yaml` with its `event_api: internal_dns` line replaced
    /// by `event_api` (which may add YAML below it), written into `dir` with
    /// the function files it refers to, and loaded with no variables.
    pub fn example_in(dir: &Path, event_api: &str) -> LoadedSpec {
        let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let text = std::fs::read_to_string(examples.join("aws.yaml")).unwrap();
        assert!(text.contains("event_api: internal_dns"));
        let text = text.replace("event_api: internal_dns", event_api);
        std::fs::create_dir_all(dir.join("functions")).unwrap();
        for f in std::fs::read_dir(examples.join("functions")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.join("functions").join(f.file_name())).unwrap();
        }
        std::fs::write(dir.join("aws.yaml"), text).unwrap();
        stacks::spec::load_with_env(dir.join("aws.yaml"), &|_| None).expect("the spec loads")
    }
}
