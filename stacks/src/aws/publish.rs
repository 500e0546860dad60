//! Deploy by digest: the engine image built from source (when the spec
//! names no prebuilt image) is pushed to the stack's ECR repository during
//! `up`, and task definitions and executor user data run it as
//! `repo@sha256:...`. The build is reproducible, so an unchanged engine
//! gives the same digest and no new task definition.
//!
//! This module owns finding the engine binary (a given path, or a release
//! build in the stackctl workspace), building the image, and the push with
//! credentials from ECR's `GetAuthorizationToken`. `apply` runs the push
//! once the repository exists and before anything that runs the image.
//!
//! The registry is reached at the repository's host unless
//! [`EngineImage::registry_endpoint`] says otherwise (an ECR interface VPC
//! endpoint without private DNS; tests point it at a local registry while
//! the repository itself lives in the AWS API endpoint): the image keeps the
//! repository's name either way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::context::Aws;
use super::error::{AwsError, Result, Subject};
use crate::image::{
    self, BuildOptions, BuiltImage, Credentials, ImageError, ImageRef, PushOptions, PushReport,
};

/// Environment variable naming the engine binary to ship (`--engine-binary`).
pub const ENGINE_BINARY_ENV: &str = "STACKCTL_ENGINE_BINARY";
/// Environment variable overriding where the registry is reached
/// (`--registry-endpoint`).
pub const REGISTRY_ENDPOINT_ENV: &str = "STACKCTL_REGISTRY_ENDPOINT";

/// The engine image `up` deploys by digest.
#[derive(Debug, Clone)]
pub struct EngineImage {
    /// The built image (blobs in memory).
    pub image: Arc<BuiltImage>,
    /// The registry's base URL, when not the repository's host.
    pub registry_endpoint: Option<String>,
}

impl EngineImage {
    /// The manifest digest (`sha256:...`).
    pub fn digest(&self) -> String {
        self.image.manifest_digest.to_string()
    }
}

/// Where the engine binary comes from.
#[derive(Debug, Clone)]
pub enum EngineSource {
    /// A built binary (`--engine-binary`).
    Binary(PathBuf),
    /// `cargo build --profile dist -p engine` in this stackctl workspace.
    Workspace(PathBuf),
    /// The running `stackctl` itself, which contains the engine: installed
    /// as the image's `stackctl-engine`, it runs the engine (a binary named
    /// `stackctl-engine` is the engine's command line).
    Running(PathBuf),
}

impl EngineSource {
    /// `binary` when given; else the stackctl workspace containing one of
    /// `search_from` (the spec's directory, then the current one); else
    /// `running`, the stackctl binary that runs this (an installed stackctl
    /// ships its own engine).
    pub fn find(
        binary: Option<&Path>,
        search_from: &[&Path],
        running: Option<&Path>,
    ) -> std::result::Result<Self, ImageError> {
        if let Some(binary) = binary {
            return Ok(Self::Binary(binary.to_path_buf()));
        }
        search_from
            .iter()
            .find_map(|start| workspace_above(start))
            .map(Self::Workspace)
            .or_else(|| running.map(|p| Self::Running(p.to_path_buf())))
            .ok_or_else(|| {
                ImageError::Cargo(format!(
                    "the spec builds the engine image from source (no `image.uri`), but no stackctl \
                     workspace (a Cargo.toml next to engine/Cargo.toml) is above {}; pass \
                     --engine-binary PATH, --image URI, or set `image.uri`",
                    search_from
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            })
    }
}

/// The nearest directory at or above `start` holding the stackctl
/// workspace.
fn workspace_above(start: &Path) -> Option<PathBuf> {
    let start = start.canonicalize().ok()?;
    start
        .ancestors()
        .find(|d| d.join("Cargo.toml").is_file() && d.join("engine").join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
}

/// Builds the engine image (blocking: may run cargo).
pub fn build(source: &EngineSource) -> std::result::Result<BuiltImage, ImageError> {
    let (binary, revision) = match source {
        EngineSource::Binary(path) | EngineSource::Running(path) => (path.clone(), None),
        EngineSource::Workspace(dir) => {
            (image::build_engine_release(dir)?, image::git_revision(dir))
        }
    };
    image::build(&BuildOptions {
        revision,
        ..BuildOptions::new(binary)
    })
}

/// Pushes the image to the repository `uri` (`host/name`) with ECR's
/// credentials, by digest (`PushReport::reference` is `uri@digest`).
pub(crate) async fn push(
    aws: &Aws,
    subject: &Subject,
    uri: &str,
    engine: &EngineImage,
) -> Result<PushReport> {
    let target: ImageRef = uri.parse().map_err(|source| AwsError::Image {
        subject: subject.clone(),
        action: "parse the repository URI",
        source: Box::new(source),
    })?;
    let opts = PushOptions {
        credentials: Some(ecr_credentials(aws, subject).await?),
        plain_http: false,
        endpoint: engine.registry_endpoint.clone(),
    };
    image::push(&engine.image, &target, &opts, &mut |_| {})
        .await
        .map_err(|source| AwsError::Image {
            subject: subject.clone(),
            action: "push",
            source: Box::new(source),
        })
}

/// Registry credentials from ECR's `GetAuthorizationToken`.
async fn ecr_credentials(aws: &Aws, subject: &Subject) -> Result<Credentials> {
    let token = aws
        .ecr()
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| AwsError::api(subject.clone(), "GetAuthorizationToken", e))?;
    let token = token
        .authorization_data()
        .first()
        .and_then(|d| d.authorization_token())
        .ok_or(AwsError::Incomplete {
            subject: subject.clone(),
            action: "GetAuthorizationToken",
            missing: "authorizationData[0].authorizationToken",
        })?;
    Credentials::from_ecr_token(token).map_err(|source| AwsError::Image {
        subject: subject.clone(),
        action: "decode the ECR authorization token",
        source: Box::new(source),
    })
}

/// For a stack with nothing to change: its task definitions already name
/// this digest, but the repository may have lost the image since (an ECR
/// lifecycle rule expiring untagged images, a hand delete), and the next
/// task start or new executor would fail to pull it. Pushes it again if so;
/// when it is there this costs one `GetAuthorizationToken` and one manifest
/// `HEAD`. Returns the reference when it pushed.
pub async fn ensure_pushed(
    aws: &Aws,
    planned: &super::AwsPlan,
    engine: &EngineImage,
) -> Result<Option<String>> {
    let Some(repo) = planned
        .graph
        .get(&crate::graph::LogicalId::new("ecr.engine"))
    else {
        return Ok(None);
    };
    let uri = super::plan::ecr_repository_uri(&planned.env, &repo.name);
    let subject = Subject::new(&repo.id, &repo.name);
    let report = push(aws, &subject, &uri, engine).await?;
    Ok(report.manifest_pushed.then_some(report.reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_workspace_above_a_spec() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = here.parent().unwrap();
        let running = Path::new("/usr/local/bin/stackctl");
        match EngineSource::find(None, &[&root.join("examples")], Some(running)).unwrap() {
            EngineSource::Workspace(dir) => assert_eq!(dir, root.canonicalize().unwrap()),
            other => panic!("{other:?}"),
        }
        let elsewhere = tempfile::tempdir().unwrap();
        let err = EngineSource::find(None, &[elsewhere.path()], None).unwrap_err();
        assert!(err.to_string().contains("--engine-binary"), "{err}");
        let given = EngineSource::find(
            Some(Path::new("/bin/echo")),
            &[elsewhere.path()],
            Some(running),
        )
        .unwrap();
        assert!(matches!(given, EngineSource::Binary(p) if p == Path::new("/bin/echo")));
        let own = EngineSource::find(None, &[elsewhere.path()], Some(running)).unwrap();
        assert!(matches!(own, EngineSource::Running(p) if p == running));
    }
}
