//! Debian's `docker-registry` (distribution 2.8): a real OCI registry on
//! loopback for image push tests, since moto's ECR has no registry protocol.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::http::{self, Target};
use crate::process::{self, Proc, START_TIMEOUT};

const COMPONENT: &str = "docker-registry";
const LISTEN_MARKER: &str = "listening on 127.0.0.1:";

/// How the registry authenticates clients (distribution's `auth` section).
#[derive(Debug, Clone, Default)]
pub enum RegistryAuth {
    /// Anyone may pull and push.
    #[default]
    None,
    /// Basic auth against an htpasswd file (bcrypt hashes only).
    Htpasswd {
        /// The htpasswd file.
        path: PathBuf,
    },
    /// Bearer tokens from a token service (distribution's `token` auth).
    Token {
        /// Where clients get tokens, e.g. `http://127.0.0.1:PORT/token`.
        realm: String,
        /// The `service` the tokens are for.
        service: String,
        /// The `iss` the tokens carry.
        issuer: String,
        /// PEM certificates whose keys may sign tokens.
        root_cert_bundle: PathBuf,
    },
}

/// Options of a [`Registry`] before it starts.
#[derive(Debug, Clone, Default)]
pub struct RegistryBuilder {
    auth: RegistryAuth,
}

impl RegistryBuilder {
    /// How clients authenticate. Default: not at all.
    pub fn auth(mut self, auth: RegistryAuth) -> Self {
        self.auth = auth;
        self
    }

    pub fn start(self) -> Result<Registry> {
        Registry::start_with(self)
    }
}

/// A running registry with filesystem storage in a temp dir, stopped and
/// removed on drop. Plain HTTP: clients must treat it as insecure
/// (`skopeo --dest-tls-verify=false`, `podman push --tls-verify=false`).
#[derive(Debug)]
pub struct Registry {
    // Declared before the dir so the process stops before its dir goes away.
    proc: Proc,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// A registry without auth.
    pub fn start() -> Result<Self> {
        Self::builder().start()
    }

    /// A registry with options (auth).
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    fn start_with(options: RegistryBuilder) -> Result<Self> {
        let binary = process::find_binary(
            COMPONENT,
            "Debian package `docker-registry`",
            &[PathBuf::from("/usr/bin/docker-registry")],
        )?;
        let dir = process::temp_dir("registry")?;
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yaml(&storage, &options.auth))
            .map_err(|e| Error::io(format!("write {}", config.display()), e))?;

        let mut cmd = Command::new(binary);
        cmd.arg("serve").arg(&config).current_dir(dir.path());
        // REGISTRY_* variables override the config file: keep the test's own.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(key);
            }
        }
        // A fixed secret silences the startup warning; nothing is shared.
        cmd.env("REGISTRY_HTTP_SECRET", "harness");
        let mut proc = Proc::spawn(COMPONENT, cmd, &dir.path().join("registry.log"))?;
        let log_path = proc.log_path().to_path_buf();
        // Port 0 in the config: the registry picks a free port and logs it,
        // so there is no race for the port.
        let port = proc.wait_ready(START_TIMEOUT, || {
            let log = process::log_tail(&log_path);
            let port = parse_port(&log).ok_or("no listening address logged yet")?;
            let answer = http::get(&Target::Tcp(format!("127.0.0.1:{port}")), "/v2/")
                .map_err(|e| e.to_string())?;
            // 401: up, and asking for the credentials it was configured with.
            match answer.status {
                200 | 401 => Ok(port),
                other => Err(format!("GET /v2/ answered {other}")),
            }
        })?;
        Ok(Registry { proc, port, dir })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host_port())
    }

    /// `127.0.0.1:<port>`: the registry part of an image reference.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where blobs and manifests are stored.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// `GET <path>` against the registry, e.g. `/v2/_catalog`.
    pub fn get(&self, path: &str) -> Result<http::Response> {
        http::get(&Target::Tcp(self.host_port()), path)
    }

    /// The registry's recent output.
    pub fn log(&self) -> String {
        self.proc.log()
    }
}

fn config_yaml(storage: &Path, auth: &RegistryAuth) -> String {
    let auth = match auth {
        RegistryAuth::None => String::new(),
        RegistryAuth::Htpasswd { path } => format!(
            "auth:\n  htpasswd:\n    realm: harness\n    path: {}\n",
            path.display()
        ),
        RegistryAuth::Token {
            realm,
            service,
            issuer,
            root_cert_bundle,
        } => format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    \
             issuer: {issuer}\n    rootcertbundle: {}\n",
            root_cert_bundle.display()
        ),
    };
    format!(
        "version: 0.1\n\
         log:\n  level: info\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:0\n{auth}",
        storage = storage.display()
    )
}

fn parse_port(log: &str) -> Option<u16> {
    let rest = &log[log.find(LISTEN_MARKER)? + LISTEN_MARKER.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_port_from_the_listening_line() {
        let log = "time=\"x\" level=info msg=\"listening on 127.0.0.1:46023\" go.version=go1.19.8";
        assert_eq!(parse_port(log), Some(46023));
    }
}
