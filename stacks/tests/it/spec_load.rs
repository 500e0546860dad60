//! Loading real files: the examples and the `init` templates validate and
//! load to the stacks they describe; interpolation reads the environment;
//! errors and warnings come out with their place, as text and as JSON.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use stacks::spec::templates::{INIT_AWS, INIT_LOCAL};
use stacks::spec::{LoadError, Provider, Scaling, Severity, load_str, load_with_env};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// Each diagnostic's line and spec path.
fn places(diagnostics: &[stacks::spec::Diagnostic]) -> Vec<(usize, &str)> {
    diagnostics
        .iter()
        .map(|d| (d.line, d.path.as_str()))
        .collect()
}

fn errors_of(result: Result<stacks::spec::LoadedSpec, LoadError>) -> stacks::spec::SpecErrors {
    match result {
        Err(LoadError::Invalid(e)) => e,
        Err(other) => panic!("expected validation errors, got {other}"),
        Ok(loaded) => panic!("expected validation errors, got a valid spec: {loaded:?}"),
    }
}

#[test]
fn aws_example_is_the_reference_stack() {
    let loaded = example("aws.yaml", &no_env);
    let spec = &loaded.spec;
    assert_eq!(spec.provider, Provider::Aws);
    let api = &spec.services.event_api;
    assert_eq!((api.count, api.cpu, api.memory), (2, 512, 1024));
    match &api.scaling {
        Some(Scaling::Cpu {
            scale_out,
            scale_in,
            ..
        }) => {
            assert_eq!((scale_out.threshold, scale_in.threshold), (80.0, 40.0));
            assert_eq!((scale_out.adjustment, scale_in.adjustment), (1, -1));
            assert_eq!(
                (scale_out.cooldown.as_secs(), scale_in.cooldown.as_secs()),
                (180, 300)
            );
        }
        other => panic!("event-api scales on cpu, got {other:?}"),
    }
    assert_eq!(spec.services.runner.count, 4);
    assert!(
        matches!(&spec.services.runner.scaling, Some(Scaling::Sqs { queue, .. }) if queue == "events")
    );
    let ex = &spec.executors;
    assert_eq!(
        (ex.instance_type.as_str(), ex.min, ex.desired, ex.max),
        ("t3.medium", 1, 1, 4)
    );
    assert!(matches!(&ex.scaling, Some(Scaling::Sqs { queue, .. }) if queue == "work"));
    assert!(spec.state.redis.auth && spec.state.redis.transit_encryption);
    // A replica in another AZ and daily snapshots: a node loss loses no run.
    assert_eq!(
        (
            spec.state.redis.replicas,
            spec.state.redis.snapshot_retention_days
        ),
        (1, 1)
    );
    assert_eq!(spec.state.run_retention.as_secs(), 7 * 86_400);
    assert_eq!(
        spec.network.event_api,
        stacks::spec::Connection::InternalDns
    );
    let ids: Vec<&str> = loaded.function_defs().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        ["charge-pro-plan", "nightly-report", "hello", "onboarding"]
    );
}

/// `examples/<file>` loaded with `env`; panics with the rendered errors.
fn example(file: &str, env: &dyn Fn(&str) -> Option<String>) -> stacks::spec::LoadedSpec {
    load_with_env(root().join("examples").join(file), env)
        .unwrap_or_else(|e| panic!("examples/{file}: {}", render(e)))
}

fn render(e: LoadError) -> String {
    match e {
        LoadError::Invalid(errors) => errors.render(),
        other => other.to_string(),
    }
}

#[test]
fn local_example_loads_with_defaults_from_the_environment() {
    let loaded = example("local.yaml", &no_env);
    let spec = &loaded.spec;
    assert_eq!(spec.provider, Provider::Local);
    assert_eq!(spec.services.event_api.port, Some(8288));
    assert_eq!(spec.event_keys["default"], "local-dev-key");
    let onboarding = loaded
        .functions
        .iter()
        .find(|f| f.def.id == "onboarding")
        .expect("the onboarding function");
    assert!(onboarding.file.ends_with("functions/onboarding.yaml"));
    let url = &onboarding.def.steps[0]
        .http
        .as_ref()
        .expect("an http step")
        .url;
    assert_eq!(url, "http://127.0.0.1:8300/welcome");

    let env = |name: &str| match name {
        "STACKCTL_EVENT_KEY" => Some("from-env".to_string()),
        "STEP_URL" => Some("http://127.0.0.1:9999".to_string()),
        _ => None,
    };
    let loaded = example("local.yaml", &env);
    assert_eq!(loaded.spec.event_keys["default"], "from-env");
    let f = loaded
        .function_defs()
        .find(|f| f.id == "onboarding")
        .expect("onboarding");
    assert_eq!(
        f.steps[0].http.as_ref().expect("http").url,
        "http://127.0.0.1:9999/welcome"
    );
}

#[test]
fn init_templates_validate() {
    for (name, text, provider) in [
        ("init-aws.yaml", INIT_AWS, Provider::Aws),
        ("init-local.yaml", INIT_LOCAL, Provider::Local),
    ] {
        let path = root().join("templates").join(name);
        let loaded =
            load_str(&path, text, &no_env).unwrap_or_else(|e| panic!("{name}: {}", render(e)));
        assert_eq!(loaded.spec.provider, provider, "{name}");
        assert_eq!(loaded.functions.len(), 1, "{name}");
        // The embedded copy is the file on disk.
        assert_eq!(std::fs::read_to_string(&path).expect("template file"), text);
    }
}

#[test]
fn interpolation_resolves_types_after_substitution() {
    let vars: HashMap<&str, &str> = [("N", "3"), ("CPU", "1024"), ("KEY", "k1")].into();
    let env = |name: &str| vars.get(name).map(|v| v.to_string());
    // Block style: in a flow mapping (`{...}`) a plain `${` is not valid YAML.
    let text = "stack: demo\nprovider: local\nservices:\n  event-api:\n    count: ${N}\n    cpu: ${CPU}\n    memory: ${MEM:-2048}\n  runner:\n    count: ${N}\nexecutors:\n  min: 1\n  desired: ${D:-2}\n  max: 4\nevent_keys: {default: \"${KEY}\"}\n";
    let loaded =
        load_str(Path::new("inline.yaml"), text, &env).unwrap_or_else(|e| panic!("{}", render(e)));
    let api = &loaded.spec.services.event_api;
    assert_eq!((api.count, api.cpu, api.memory), (3, 1024, 2048));
    assert_eq!(loaded.spec.executors.desired, 2);
    assert_eq!(loaded.spec.event_keys["default"], "k1");
}

#[test]
fn every_error_is_reported_at_once_with_its_place() {
    let text = "stack: demo\nprovider: local\nservices:\n  event-api: {count: 1, cpu: 512, memory: 512}\n  runner: {cuont: 1}\nexecutors: {min: 2, desired: 1, max: 4}\nevent_keys: {default: k}\nlogs: {retention_days: 2}\n";
    let errors = errors_of(load_str(Path::new("s.yaml"), text, &no_env));
    let found: Vec<(usize, usize, &str)> = errors
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column, d.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (4, 43, "services.event-api.memory"),
            (5, 12, "services.runner.cuont"),
            (6, 30, "executors.desired"),
            (8, 24, "logs.retention_days"),
        ]
    );
    let json = errors.to_json();
    assert_eq!(json["valid"], false);
    let first = &json["errors"][0];
    for key in ["file", "line", "column", "message", "help", "path"] {
        assert!(!first[key].is_null(), "{key} in {first}");
    }
    assert_eq!(first["file"], "s.yaml");
    assert!(errors.render().ends_with("4 errors\n"));
}

#[test]
fn state_retention_and_snapshots_are_checked_at_their_place() {
    let text = "stack: demo\nprovider: aws\nservices:\n  event-api: {count: 1}\n  runner: {count: 1}\nexecutors: {min: 1, desired: 1, max: 1}\nevent_keys: {default: k}\nstate:\n  run_retention: 10s\n  redis: {snapshot_retention_days: 40}\n";
    let errors = errors_of(load_str(Path::new("s.yaml"), text, &no_env));
    let found = places(&errors.diagnostics);
    assert_eq!(
        found,
        [
            (9, "state.run_retention"),
            (10, "state.redis.snapshot_retention_days"),
        ]
    );
    let text = errors.render();
    assert!(
        text.contains("at least `1m`") && text.contains("0 (no snapshots) to 35 days"),
        "{text}"
    );
}

/// The `file:line:column` of each warning, relative to the workspace.
fn warning_places(loaded: stacks::spec::LoadedSpec) -> Vec<String> {
    loaded
        .warnings
        .relative_to(&root())
        .diagnostics
        .iter()
        .map(|d| format!("{}:{}:{}", d.file.display(), d.line, d.column))
        .collect()
}

#[test]
fn aws_example_warns_of_loopback_step_urls_until_step_url_is_set() {
    let loaded = example("aws.yaml", &no_env);
    let warnings = loaded.warnings.clone().relative_to(&root());
    insta::assert_snapshot!(warnings.render());
    for d in &warnings.diagnostics {
        assert_eq!(d.severity, Severity::Warning, "{d:?}");
        assert!(d.help.contains("set `STEP_URL`"), "{d:?}");
    }
    assert_eq!(
        warning_places(loaded),
        [
            "examples/functions/billing.yaml:14:14",
            "examples/functions/billing.yaml:21:14",
            "examples/functions/onboarding.yaml:20:12",
            "examples/functions/onboarding.yaml:35:12",
        ]
    );

    let step_url =
        |url: &'static str| move |name: &str| (name == "STEP_URL").then(|| url.to_string());
    let internal = step_url("http://steps.internal:8300");
    let loaded = example("aws.yaml", &internal);
    assert!(loaded.warnings.is_empty(), "{}", loaded.warnings.render());
    let loopback = step_url("http://localhost:8300");
    let loaded = example("aws.yaml", &loopback);
    assert_eq!(loaded.warnings.diagnostics.len(), 4);

    // A local stack's executors are this machine: loopback is where its steps are.
    let loaded = example("local.yaml", &no_env);
    assert!(loaded.warnings.is_empty(), "{}", loaded.warnings.render());
}

#[test]
fn warnings_are_shown_beside_errors() {
    let text = "stack: demo\nprovider: aws\nservices:\n  event-api: {count: 1}\n  runner: {count: 1}\nexecutors: {min: 2, desired: 1, max: 4}\nevent_keys: {default: k}\nfunctions:\n  inline:\n    - id: f\n      triggers: [{event: a}]\n      steps:\n        - id: s\n          http: {url: \"http://127.0.0.1:8300/s\"}\n";
    let errors = errors_of(load_str(Path::new("s.yaml"), text, &no_env));
    assert_eq!(errors.to_string(), "1 error in s.yaml");
    let rendered = errors.render();
    assert!(
        rendered.contains("warning: step `s` of function `f` calls `http://127.0.0.1:8300/s`, a loopback address\n  --> s.yaml:14:23\n"),
        "{rendered}"
    );
    assert!(
        rendered.contains("= help: on AWS this calls the executor host itself; point the url at"),
        "{rendered}"
    );
    assert!(rendered.ends_with("\n1 error, 1 warning\n"), "{rendered}");
    let json = errors.to_json();
    assert_eq!(json["errors"].as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(
        json["warnings"][0]["path"],
        "functions.inline[0].steps[0].http.url"
    );
    assert_eq!(json["warnings"][0]["line"], 14);
}

#[test]
fn a_missing_file_is_not_a_validation_error() {
    match stacks::spec::load(root().join("examples/does-not-exist.yaml")) {
        Err(LoadError::Read { path, .. }) => assert!(path.ends_with("does-not-exist.yaml")),
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn observability_is_checked_at_its_place() {
    let head = "stack: demo\nprovider: aws\nregion: eu-west-1\nservices:\n  event-api: {count: 1}\n  runner: {count: 1}\nexecutors: {min: 1, desired: 1, max: 1}\nevent_keys: {default: k}\nqueues:\n  events: {retention: 10m}\n";
    let text = format!(
        "{head}observability:\n  traces: xray\n  sample: 1.5\n  alarms:\n    topic_arn: arn:aws:sns:us-east-1:123456789012:ops\n    email: [ops@example.com, not-an-address]\n    queue_age: 1h\n    api_errors_per_minute: 0\n"
    );
    let errors = errors_of(load_str(Path::new("s.yaml"), &text, &no_env));
    let found = places(&errors.diagnostics);
    assert_eq!(
        found,
        [
            (13, "observability.sample"),
            (15, "observability.alarms.topic_arn"),
            (16, "observability.alarms.email"),
            (16, "observability.alarms.email[1]"),
            (17, "observability.alarms.queue_age"),
            (18, "observability.alarms.api_errors_per_minute"),
        ]
    );
    let rendered = errors.render();
    for expected in [
        "not between 0 and 1",
        "is in us-east-1, not the stack's region eu-west-1",
        "both `topic_arn`",
        "`not-an-address` is not an email address",
        "before they are 1h old",
    ] {
        assert!(rendered.contains(expected), "{expected}: {rendered}");
    }
    let unknown = format!("{head}observability: {{traces: jaeger}}\n");
    let errors = errors_of(load_str(Path::new("s.yaml"), &unknown, &no_env));
    assert_eq!(errors.diagnostics[0].path, "observability.traces");

    let good = format!(
        "{head}observability:\n  traces: xray\n  alarms: {{email: [ops@example.com], queue_age: 2m}}\n"
    );
    let loaded = load_str(Path::new("s.yaml"), &good, &no_env).expect("valid");
    let o = loaded.spec.observability.expect("the section");
    assert_eq!(o.sample, 0.05, "the default fraction");
    assert_eq!(o.alarms.expect("alarms").api_errors_per_minute, 5);
    assert!(loaded.warnings.is_empty(), "{}", loaded.warnings.render());
}

#[test]
fn a_local_stack_ignores_xray_and_alarms_with_a_warning() {
    let text = "stack: demo\nprovider: local\nservices:\n  event-api: {count: 1}\n  runner: {count: 1}\nexecutors: {min: 1, desired: 1, max: 1}\nevent_keys: {default: k}\nobservability:\n  traces: xray\n  alarms: {email: [ops@example.com]}\n";
    let loaded = load_str(Path::new("s.yaml"), text, &no_env).expect("valid, with warnings");
    let warnings = places(&loaded.warnings.diagnostics);
    assert_eq!(
        warnings,
        [(9, "observability.traces"), (10, "observability.alarms")]
    );
    let rendered = loaded.warnings.render();
    assert!(
        rendered.contains("ignored by `provider: local`")
            && rendered.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{rendered}"
    );
}
