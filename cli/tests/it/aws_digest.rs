//! Deploy by digest (issue 6 item 3) against the moto server: `stackctl up`
//! of the example aws stack, whose spec names no prebuilt image, builds the
//! engine image, creates the stack's ECR repository on moto, pushes the
//! image with the credentials of ECR's `GetAuthorizationToken`, and
//! registers task definitions and executor user data that run it as
//! `repo@sha256:...`. An unchanged binary gives the same digest: `plan`
//! shows no change and a second `up` registers nothing new; a changed one
//! gives a new digest and new task definitions.
//!
//! moto's ECR has no registry protocol, so the push goes to a real
//! `docker-registry` on loopback through the documented seam
//! `STACKCTL_REGISTRY_ENDPOINT` (the registry is reached there, the image
//! keeps the ECR repository's name). That registry checks basic auth
//! against an htpasswd entry for `AWS` with moto's ECR token password, so
//! the push only succeeds with the token's credentials. Small prebuilt
//! binaries (`--engine-binary`) keep the image build fast: moto never runs
//! the image.

use crate::support::{
    assert_exit, aws_on, last_doc, plan_example, repo_root, stackctl_shipping, task_definition,
    task_definition_arns,
};
use harness::{Moto, Registry, RegistryAuth};
use stacks::aws::{Aws, Inputs};
use stacks::graph::{Attributes, LogicalId};

/// moto's ECR authorization token is `base64("AWS:<account>-auth-token")`.
const ECR_PASSWORD: &str = "123456789012-auth-token";
/// bcrypt (cost 4) of ECR_PASSWORD (docker-registry's htpasswd takes bcrypt only).
const ECR_PASSWORD_BCRYPT: &str = "$2b$04$c9uMGYoqq.oR7P08GABg3.0fKJDcP3NCBBjveN5sjq9fnnnqNMV5G";
const FIRST_BINARY: &str = "/bin/echo";
const SECOND_BINARY: &str = "/bin/cat";

struct Setup {
    moto: Moto,
    registry: Registry,
    cwd: tempfile::TempDir,
    htpasswd_dir: tempfile::TempDir,
}

impl Setup {
    fn stackctl(&self, binary: &str, args: &[&str]) -> std::process::Output {
        stackctl_shipping(&self.moto, &self.registry, binary)
            .args(args)
            .arg(repo_root().join("examples/aws.yaml"))
            .current_dir(self.cwd.path())
            .output()
            .expect("stackctl runs")
    }

    /// `up --output json`; the result line.
    fn up(&self, binary: &str) -> serde_json::Value {
        let out = self.stackctl(binary, &["--output", "json", "up", "--no-verify", "-f"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "up failed:\n{}\n{}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.registry.log()
        );
        let doc = last_doc(&out);
        assert_eq!(
            doc["type"],
            "result",
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        doc
    }

    fn plan(&self, binary: &str) -> std::process::Output {
        self.stackctl(binary, &["plan", "--detailed-exitcode", "-f"])
    }
}

async fn setup() -> Setup {
    let htpasswd = tempfile::tempdir().unwrap();
    let path = htpasswd.path().join("htpasswd");
    std::fs::write(&path, format!("AWS:{ECR_PASSWORD_BCRYPT}\n")).unwrap();
    let (moto, registry) = tokio::task::spawn_blocking(move || {
        let moto = Moto::builder()
            .ecs_service_running(8)
            .start()
            .expect("moto_server starts (run scripts/test to install it)");
        let registry = Registry::builder()
            .auth(RegistryAuth::Htpasswd { path })
            .start()
            .expect("docker-registry starts");
        (moto, registry)
    })
    .await
    .unwrap();
    Setup {
        moto,
        registry,
        cwd: tempfile::tempdir().unwrap(),
        htpasswd_dir: htpasswd,
    }
}

/// The image of the latest revision of `family`.
async fn image_of(aws: &Aws, family: &str) -> String {
    let td = task_definition(aws, family).await;
    td.container_definitions()[0].image().unwrap().to_string()
}

/// The manifest digest the registry serves for `repo@digest`, fetched with
/// the ECR credentials.
async fn registry_digest(registry: &Registry, repository: &str, digest: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/v2/{repository}/manifests/{digest}",
            registry.url()
        ))
        .basic_auth("AWS", Some(ECR_PASSWORD))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let served = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_pushes_the_built_engine_to_ecr_and_deploys_it_by_digest() {
    let s = setup().await;
    let aws = aws_on(&s.moto).await;

    // The token moto hands out is what the registry's htpasswd expects.
    let token = aws.ecr().get_authorization_token().send().await.unwrap();
    let token = token.authorization_data()[0].authorization_token().unwrap();
    let creds = stacks::image::Credentials::from_ecr_token(token).unwrap();
    assert_eq!(
        (creds.username.as_str(), creds.password.as_str()),
        ("AWS", ECR_PASSWORD)
    );

    // --- first up: build, create the repository, push, deploy by digest.
    let first = s.up(FIRST_BINARY);
    let image = first["image"]
        .as_str()
        .expect("the result names the image")
        .to_string();
    let (repo_uri, digest) = image.split_once('@').expect("deployed by digest");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{image}"
    );
    assert!(
        repo_uri.ends_with(".dkr.ecr.us-east-1.amazonaws.com/reference-engine"),
        "{image}"
    );

    let repos = aws
        .ecr()
        .describe_repositories()
        .repository_names("reference-engine")
        .send()
        .await
        .unwrap();
    assert_eq!(
        repos.repositories()[0].repository_uri(),
        Some(repo_uri),
        "the ECR repository exists on moto with the URI the image names"
    );

    for family in ["reference-event-api", "reference-runner"] {
        assert_eq!(image_of(&aws, family).await, image, "{family}");
    }
    let (_, planned) = plan_example(&aws, |spec| {
        Inputs::from_spec(spec, None)
            .with_built_image(digest, stacks::arch::Architecture::host().unwrap())
            .unwrap()
    })
    .await;
    assert!(
        !planned.plan.has_changes(),
        "{}",
        planned.plan.render_text()
    );
    let lt = planned
        .observed(&LogicalId::new("ec2.launch-template.executors"))
        .expect("the launch template exists");
    match &lt.resource.attributes {
        Attributes::LaunchTemplate(t) => assert!(
            t.user_data.contains(&image),
            "executor user data runs {image}:\n{}",
            t.user_data
        ),
        other => panic!("{other:?}"),
    }

    let (status, served) = registry_digest(&s.registry, "reference-engine", digest).await;
    assert_eq!(
        (status, served.as_str()),
        (200, digest),
        "the registry holds the pushed manifest"
    );

    // --- unchanged binary: same digest, nothing to change, nothing registered.
    let before = task_definition_arns(&aws).await;
    assert_exit(&s.plan(FIRST_BINARY), 0);
    let second = s.up(FIRST_BINARY);
    assert_eq!(second["image"], image.as_str(), "{second}");
    assert_eq!(
        second["applied"].as_array().map(Vec::len),
        Some(0),
        "{second}"
    );
    assert_eq!(task_definition_arns(&aws).await, before);

    // --- changed binary: a new digest shows as task definition changes and is deployed.
    let plan = s.plan(SECOND_BINARY);
    assert_exit(&plan, 2);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("ecs.taskdef.event-api"), "{text}");
    let third = s.up(SECOND_BINARY);
    let new_image = third["image"].as_str().unwrap().to_string();
    let (new_repo, new_digest) = new_image.split_once('@').unwrap();
    assert_eq!(new_repo, repo_uri);
    assert_ne!(new_digest, digest);
    for family in ["reference-event-api", "reference-runner"] {
        assert_eq!(image_of(&aws, family).await, new_image, "{family}");
    }
    let after = task_definition_arns(&aws).await;
    assert_eq!(
        after.len(),
        before.len() + 2,
        "one new revision per role: {after:?}"
    );
    let (status, served) = registry_digest(&s.registry, "reference-engine", new_digest).await;
    assert_eq!((status, served.as_str()), (200, new_digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_up_to_date_stack_pushes_again_an_image_its_registry_lost() {
    let mut s = setup().await;
    let aws = aws_on(&s.moto).await;
    let first = s.up(FIRST_BINARY);
    let image = first["image"].as_str().unwrap().to_string();
    let (_, digest) = image.split_once('@').unwrap();
    let before = task_definition_arns(&aws).await;

    // The repository loses the image (an ECR lifecycle rule expiring
    // untagged images would): here, a new, empty registry behind the same
    // repository URI.
    let path = s.htpasswd_dir.path().join("htpasswd");
    s.registry = tokio::task::spawn_blocking(move || {
        Registry::builder()
            .auth(RegistryAuth::Htpasswd { path })
            .start()
            .expect("docker-registry starts")
    })
    .await
    .unwrap();
    assert_eq!(
        registry_digest(&s.registry, "reference-engine", digest)
            .await
            .0,
        404
    );

    let out = s.stackctl(
        FIRST_BINARY,
        &["--output", "json", "up", "--no-verify", "-f"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Said as a progress event (NDJSON on stdout with --output json).
    assert!(
        stdout.contains("was missing from its repository; pushed"),
        "{stdout}"
    );
    let result = last_doc(&out);
    assert_eq!(
        result["applied"].as_array().map(Vec::len),
        Some(0),
        "{result}"
    );
    assert_eq!(result["aws_calls"]["writes"], 0, "{result}");
    let (status, served) = registry_digest(&s.registry, "reference-engine", digest).await;
    assert_eq!((status, served.as_str()), (200, digest), "pushed again");
    assert_eq!(
        task_definition_arns(&aws).await,
        before,
        "nothing re-registered"
    );

    // Now it is there: the next up only looks.
    let out = s.stackctl(
        FIRST_BINARY,
        &["--output", "json", "up", "--no-verify", "-f"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("was missing"), "{stderr}");
}
