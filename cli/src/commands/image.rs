//! `stackctl image build`: builds the engine's OCI image without a Docker
//! daemon (`stacks::image`), writes an OCI layout and/or pushes it. The
//! digest goes to stdout; progress goes to stderr.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;
use stacks::image::{self, BuildOptions, Credentials, ImageRef, PushEvent, PushOptions};

use crate::output::{self, Exit, Output, outln};

/// Build and push the engine's container image.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build the engine image (reproducibly, no Docker needed) and print its digest.
    Build(BuildArgs),
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// The engine binary to ship; without it, `cargo build --profile dist -p engine` runs in --workspace.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// The stackctl source workspace to build the engine in (and read the git revision from).
    #[arg(long, value_name = "DIR", default_value = ".")]
    workspace: PathBuf,
    /// Push to REGISTRY/REPOSITORY[:TAG] (no tag: pushed by digest only).
    #[arg(long, value_name = "REF")]
    push: Option<String>,
    /// Also write an OCI image layout to DIR.
    #[arg(long, value_name = "DIR")]
    oci_dir: Option<PathBuf>,
    /// Registry user; the password is read from STACKCTL_REGISTRY_PASSWORD.
    #[arg(long, env = "STACKCTL_REGISTRY_USERNAME")]
    username: Option<String>,
    /// Speak plain HTTP to a non-loopback registry (loopback registries always use HTTP).
    #[arg(long)]
    plain_http: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    digest: String,
    platform: String,
    binary: PathBuf,
    size: u64,
    layers: Vec<LayerReport>,
    shared_libraries: Vec<PathBuf>,
    build_seconds: f64,
    oci_dir: Option<PathBuf>,
    push: Option<image::PushReport>,
}

#[derive(Debug, Serialize)]
struct LayerReport {
    digest: String,
    diff_id: String,
    size: u64,
    files: usize,
}

pub async fn run(args: ImageArgs, output: Output) -> anyhow::Result<Exit> {
    match args.command {
        ImageCommand::Build(args) => build(args, output).await,
    }
}

async fn build(args: BuildArgs, output: Output) -> anyhow::Result<Exit> {
    // Parse the target first: a typo should fail before a minutes-long build.
    let target: Option<ImageRef> = args.push.as_deref().map(str::parse).transpose()?;
    let credentials = match &args.username {
        Some(user) => {
            let password = std::env::var("STACKCTL_REGISTRY_PASSWORD")
                .context("--username needs the password in STACKCTL_REGISTRY_PASSWORD")?;
            Some(Credentials::new(user, password))
        }
        None => None,
    };

    let workspace = args.workspace.clone();
    let binary = args.binary.clone();
    let started = Instant::now();
    let (built, binary) = tokio::task::spawn_blocking(move || {
        let binary = match binary {
            Some(path) => path,
            None => {
                eprintln!("building the engine: cargo build --profile dist -p engine");
                image::build_engine_release(&workspace)?
            }
        };
        let opts = BuildOptions {
            revision: image::git_revision(&workspace),
            ..BuildOptions::new(&binary)
        };
        eprintln!("building the image from {}", binary.display());
        image::build(&opts).map(|built| (built, binary))
    })
    .await
    .context("the image build task failed")??;
    let build_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "built {} ({}, {}) in {build_seconds:.1} s",
        built.manifest_digest,
        human_bytes(built.size()),
        built.platform.architecture
    );

    if let Some(dir) = &args.oci_dir {
        built
            .write_oci_layout(dir, target.as_ref().and_then(|t| t.tag.as_deref()))
            .with_context(|| format!("writing the OCI layout to {}", dir.display()))?;
        eprintln!("wrote OCI layout {}", dir.display());
    }

    let push = match &target {
        Some(target) => {
            let opts = PushOptions {
                credentials,
                plain_http: args.plain_http,
                endpoint: None,
            };
            let report = image::push(&built, target, &opts, &mut print_progress)
                .await
                .with_context(|| format!("pushing to {target}"))?;
            Some(report)
        }
        None => None,
    };

    let report = Report {
        digest: built.manifest_digest.to_string(),
        platform: format!("{}/{}", built.platform.os, built.platform.architecture),
        binary,
        size: built.size(),
        layers: built
            .layers
            .iter()
            .map(|l| LayerReport {
                digest: l.digest.to_string(),
                diff_id: l.diff_id.to_string(),
                size: l.blob.len() as u64,
                files: l.files.len(),
            })
            .collect(),
        shared_libraries: built.shared_libraries.clone(),
        build_seconds,
        oci_dir: args.oci_dir,
        push,
    };
    match output {
        Output::Json => output::print_json(&report)?,
        Output::Human => {
            outln!("{}", report.digest)?;
            if let Some(push) = &report.push {
                outln!("{}", push.reference)?;
                outln!(
                    "uploaded {}, skipped {} already in the registry",
                    human_bytes(push.pushed_bytes),
                    human_bytes(push.skipped_bytes)
                )?;
            }
        }
    }
    Ok(Exit::Ok)
}

fn print_progress(event: &PushEvent<'_>) {
    match event {
        PushEvent::BlobExists { kind, digest, size } => {
            eprintln!("{kind} {digest} exists ({})", human_bytes(*size));
        }
        PushEvent::BlobUploading { kind, digest, size } => {
            eprintln!("{kind} {digest} uploading ({})", human_bytes(*size));
        }
        PushEvent::BlobUploaded { kind, digest, .. } => {
            eprintln!("{kind} {digest} uploaded");
        }
        PushEvent::ManifestPushed { reference } => eprintln!("pushed {reference}"),
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
