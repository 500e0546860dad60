//! Daemonless OCI images of the engine, built and pushed in-process the way
//! ko and jib do: no Docker daemon, no base image.
//!
//! [`build`] makes a `linux/<arch>` image, for the architecture the binary's
//! ELF header names ([`elf`]), with two reproducible layers:
//! a base layer (passwd/group for a non-root user, CA certificates and the
//! shared libraries the binary links) and a layer with only the engine
//! binary, so a new binary leaves the base layer's digest unchanged.
//! [`BuiltImage::write_oci_layout`] writes an OCI image layout directory and
//! [`push`] uploads the image over the OCI distribution API.

pub mod elf;
mod layer;
mod libs;
pub mod oci;
mod reference;
mod registry;
mod source;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

pub use elf::ElfError;
pub use layer::{Layer, LayerBuilder, Owner};
pub use oci::Digest;
pub use reference::ImageRef;
pub use registry::{BlobKind, BlobReport, Credentials, PushEvent, PushOptions, PushReport, push};
pub use source::{build_engine, build_engine_release, git_revision};

use crate::arch::Architecture;
use oci::{
    Descriptor, EmptyObject, History, ImageConfig, Index, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX,
    MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST, Manifest, Platform, RootFs, RuntimeConfig,
};

/// Where the engine binary sits in the image (the entrypoint).
pub const ENGINE_PATH: &str = "/usr/local/bin/stackctl-engine";
/// The non-root user the engine runs as (distroless's `nonroot`).
pub const USER: &str = "65532:65532";
/// The user's home and the container's working directory (writable by it).
pub const HOME: &str = "/home/nonroot";
/// The host's CA bundle, copied into the image at the same path.
pub const CA_CERTIFICATES: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The event API's port.
pub const ENGINE_PORT: u16 = 8288;

const NONROOT: Owner = Owner {
    uid: 65532,
    gid: 65532,
};

/// Errors from building, writing or pushing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot build an image layer: {0}")]
    Layer(#[source] io::Error),
    #[error("cannot list the shared libraries of {binary}: {message}")]
    Ldd { binary: PathBuf, message: String },
    #[error("{binary} needs {library}, which this host does not have")]
    MissingLibrary { binary: PathBuf, library: String },
    #[error("{binary} cannot be the engine binary: {source}")]
    Elf {
        binary: PathBuf,
        #[source]
        source: ElfError,
    },
    #[error(
        "{binary} is a dynamically linked {architecture} binary, but this host is {host}: the \
         image would carry the host's shared libraries; ship a statically linked binary or \
         build the image on an {architecture} host"
    )]
    ForeignLibraries {
        binary: PathBuf,
        architecture: Architecture,
        host: &'static str,
    },
    #[error("cannot build the engine with cargo: {0}")]
    Cargo(String),
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    #[error("invalid registry credentials: {0}")]
    Credentials(String),
    #[error("{method} {url}: {source}")]
    Http {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url}: registry answered {status}: {message}")]
    Registry {
        method: String,
        url: String,
        status: u16,
        message: String,
    },
    #[error("registry authentication failed: {0}")]
    Auth(String),
}

/// What goes into the image.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The engine binary to ship.
    pub binary: PathBuf,
    /// Timestamp of every file and of the config (`SOURCE_DATE_EPOCH`, else 0).
    pub source_date_epoch: u64,
    /// `org.opencontainers.image.source`.
    pub source: String,
    /// `org.opencontainers.image.version`.
    pub version: String,
    /// `org.opencontainers.image.revision`, when known.
    pub revision: Option<String>,
    /// The CA bundle to copy to [`CA_CERTIFICATES`]; `None` leaves it out.
    pub ca_certificates: Option<PathBuf>,
}

impl BuildOptions {
    /// Defaults for `binary`: `SOURCE_DATE_EPOCH` from the environment, this
    /// crate's repository and version as labels, the host's CA bundle, and no
    /// revision.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            source: env!("CARGO_PKG_REPOSITORY").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            revision: None,
            ca_certificates: Some(PathBuf::from(CA_CERTIFICATES)),
        }
    }
}

/// A built image, all blobs in memory.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The binary's architecture, which the stack's task definitions and
    /// executor hosts follow.
    pub architecture: Architecture,
    pub platform: Platform,
    /// Base layer first, then the binary layer.
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// Libraries copied into the base layer (empty for a static binary).
    pub shared_libraries: Vec<PathBuf>,
}

/// One blob of an image, as stored in a layout or uploaded to a registry.
#[derive(Debug, Clone, Copy)]
pub struct Blob<'a> {
    pub kind: BlobKind,
    pub media_type: &'static str,
    pub digest: &'a Digest,
    pub bytes: &'a [u8],
}

impl BuiltImage {
    /// Layers then config: the blobs a manifest refers to.
    pub fn blobs(&self) -> Vec<Blob<'_>> {
        let mut blobs: Vec<Blob<'_>> = self
            .layers
            .iter()
            .map(|l| Blob {
                kind: BlobKind::Layer,
                media_type: MEDIA_TYPE_LAYER_GZIP,
                digest: &l.digest,
                bytes: &l.blob,
            })
            .collect();
        blobs.push(Blob {
            kind: BlobKind::Config,
            media_type: MEDIA_TYPE_CONFIG,
            digest: &self.config_digest,
            bytes: &self.config,
        });
        blobs
    }

    /// Compressed size: every blob plus the manifest.
    pub fn size(&self) -> u64 {
        let blobs: usize = self.blobs().iter().map(|b| b.bytes.len()).sum();
        (blobs + self.manifest.len()) as u64
    }

    /// Writes (or adds to) an OCI image layout at `dir`; `index.json` then
    /// names this image, tagged `ref_name` when given.
    pub fn write_oci_layout(&self, dir: &Path, ref_name: Option<&str>) -> Result<(), ImageError> {
        let blob_dir = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blob_dir).map_err(|source| ImageError::Write {
            path: blob_dir.clone(),
            source,
        })?;
        let write = |path: PathBuf, bytes: &[u8]| {
            std::fs::write(&path, bytes).map_err(|source| ImageError::Write { path, source })
        };
        for blob in self.blobs() {
            write(blob_dir.join(blob.digest.hex()), blob.bytes)?;
        }
        write(blob_dir.join(self.manifest_digest.hex()), &self.manifest)?;
        let mut annotations = BTreeMap::new();
        if let Some(name) = ref_name {
            annotations.insert(
                "org.opencontainers.image.ref.name".to_owned(),
                name.to_owned(),
            );
        }
        let index = Index {
            schema_version: 2,
            media_type: MEDIA_TYPE_INDEX.to_owned(),
            manifests: vec![Descriptor {
                media_type: MEDIA_TYPE_MANIFEST.to_owned(),
                digest: self.manifest_digest.clone(),
                size: self.manifest.len() as u64,
                platform: Some(self.platform.clone()),
                annotations,
            }],
        };
        write(dir.join("index.json"), &to_json(&index))?;
        write(dir.join("oci-layout"), oci::OCI_LAYOUT_FILE.as_bytes())
    }
}

/// Builds the engine image from `opts.binary`, for the binary's
/// architecture.
pub fn build(opts: &BuildOptions) -> Result<BuiltImage, ImageError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ImageError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let binary = read(&opts.binary)?;
    let elf = elf::read(&binary).map_err(|source| ImageError::Elf {
        binary: opts.binary.clone(),
        source,
    })?;
    let architecture = elf.architecture;
    let platform = Platform {
        architecture: architecture.oci().to_owned(),
        os: "linux".to_owned(),
    };
    // The libraries copied are the host's, which only a binary of the
    // host's architecture can load.
    let shared_libraries = if Architecture::host() == Some(architecture) {
        libs::shared_libraries(&opts.binary)?
    } else if elf.dynamic {
        return Err(ImageError::ForeignLibraries {
            binary: opts.binary.clone(),
            architecture,
            host: std::env::consts::ARCH,
        });
    } else {
        Vec::new()
    };

    let mut base = LayerBuilder::new(opts.source_date_epoch);
    base.dir("/tmp", 0o1777, Owner::ROOT)
        .dir(HOME, 0o755, NONROOT)
        .file(
            "/etc/passwd",
            format!(
                "root:x:0:0:root:/root:/sbin/nologin\n\
                 nonroot:x:{}:{}:nonroot:{HOME}:/sbin/nologin\n",
                NONROOT.uid, NONROOT.gid
            )
            .into_bytes(),
            0o644,
        )
        .file(
            "/etc/group",
            format!("root:x:0:\nnonroot:x:{}:\n", NONROOT.gid).into_bytes(),
            0o644,
        )
        .file(
            "/etc/nsswitch.conf",
            b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
            0o644,
        );
    if let Some(ca) = &opts.ca_certificates {
        base.file(CA_CERTIFICATES, read(ca)?, 0o644);
    }
    for lib in &shared_libraries {
        // Read through symlinks: the image gets a plain file at the path the loader asks for.
        let path = lib.to_string_lossy();
        base.file(&path, read(lib)?, 0o755);
    }
    let base = base.finish().map_err(ImageError::Layer)?;

    let mut app = LayerBuilder::new(opts.source_date_epoch);
    app.file(ENGINE_PATH, binary, 0o755);
    let app = app.finish().map_err(ImageError::Layer)?;

    let created = oci::rfc3339(opts.source_date_epoch);
    let mut labels = BTreeMap::from([
        (
            "org.opencontainers.image.source".to_owned(),
            opts.source.clone(),
        ),
        (
            "org.opencontainers.image.version".to_owned(),
            opts.version.clone(),
        ),
        (
            "org.opencontainers.image.title".to_owned(),
            "stackctl-engine".to_owned(),
        ),
    ]);
    if let Some(rev) = &opts.revision {
        labels.insert("org.opencontainers.image.revision".to_owned(), rev.clone());
    }
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        format!("HOME={HOME}"),
    ];
    if opts.ca_certificates.is_some() {
        env.push(format!("SSL_CERT_FILE={CA_CERTIFICATES}"));
    }
    let config = ImageConfig {
        created: Some(created.clone()),
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        config: RuntimeConfig {
            user: Some(USER.to_owned()),
            exposed_ports: BTreeMap::from([(format!("{ENGINE_PORT}/tcp"), EmptyObject {})]),
            env,
            entrypoint: vec![ENGINE_PATH.to_owned()],
            cmd: vec!["--role".to_owned(), "all".to_owned()],
            working_dir: Some(HOME.to_owned()),
            labels,
        },
        rootfs: RootFs {
            kind: "layers".to_owned(),
            diff_ids: vec![base.diff_id.clone(), app.diff_id.clone()],
        },
        history: vec![
            History {
                created: Some(created.clone()),
                created_by: Some(format!(
                    "stackctl image build: base (users, CA certificates, {} shared libraries)",
                    shared_libraries.len()
                )),
            },
            History {
                created: Some(created),
                created_by: Some(format!("stackctl image build: {ENGINE_PATH}")),
            },
        ],
    };
    let config = to_json(&config);
    let config_digest = Digest::sha256(&config);
    let layers = vec![base, app];
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST.to_owned(),
        config: Descriptor {
            media_type: MEDIA_TYPE_CONFIG.to_owned(),
            digest: config_digest.clone(),
            size: config.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: MEDIA_TYPE_LAYER_GZIP.to_owned(),
                digest: l.digest.clone(),
                size: l.blob.len() as u64,
                platform: None,
                annotations: BTreeMap::new(),
            })
            .collect(),
        annotations: BTreeMap::new(),
    };
    let manifest = to_json(&manifest);
    Ok(BuiltImage {
        architecture,
        platform,
        layers,
        manifest_digest: Digest::sha256(&manifest),
        manifest,
        config,
        config_digest,
        shared_libraries,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("OCI documents are plain structs with string keys")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An architecture this host is not.
    fn foreign() -> Architecture {
        match Architecture::host() {
            Some(Architecture::Arm64) => Architecture::X86_64,
            _ => Architecture::Arm64,
        }
    }

    fn options(binary: &Path) -> BuildOptions {
        BuildOptions {
            source_date_epoch: 0,
            ca_certificates: None,
            ..BuildOptions::new(binary)
        }
    }

    #[test]
    fn the_image_is_for_the_binarys_architecture_not_the_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("stackctl-engine");
        let arch = foreign();
        std::fs::write(&binary, elf::fixture(arch, false)).unwrap();
        let image = build(&options(&binary)).unwrap();
        assert_eq!(image.architecture, arch);
        assert_eq!(image.platform.architecture, arch.oci());
        let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["architecture"], arch.oci());
        assert_eq!(config["os"], "linux");
        assert!(image.shared_libraries.is_empty());

        // Its loader and libc would be the host's.
        std::fs::write(&binary, elf::fixture(arch, true)).unwrap();
        let err = build(&options(&binary)).unwrap_err();
        assert!(
            matches!(&err, ImageError::ForeignLibraries { architecture, .. } if *architecture == arch),
            "{err}"
        );
        assert!(err.to_string().contains("statically linked"), "{err}");

        std::fs::write(&binary, "#!/bin/sh\nexec true\n").unwrap();
        let err = build(&options(&binary)).unwrap_err();
        assert!(
            matches!(
                &err,
                ImageError::Elf {
                    source: ElfError::NotElf(_),
                    ..
                }
            ),
            "{err}"
        );
    }
}
