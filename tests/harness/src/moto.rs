//! The moto server (PyPI `moto[server]`): every AWS API on one loopback
//! endpoint, for tests of the AWS provider and the SQS backend. It runs
//! through `tests/harness/moto_plus.py`, which adds the AWS behaviour moto
//! lacks and stackctl relies on (instance refreshes, each instance's launch
//! template version).

use std::path::PathBuf;
use std::process::Command;

use crate::error::Result;
use crate::http::{self, Target};
use crate::process::{self, Proc, START_TIMEOUT};

const COMPONENT: &str = "moto_server";
const PORT_MARKER: &str = "Running on http://127.0.0.1:";

/// Values a client needs to reach moto; `aws_env` hands them out as env vars.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";

/// Options for [`Moto`]; start with [`Moto::builder`].
#[derive(Debug, Clone)]
pub struct MotoBuilder {
    env: Vec<(String, String)>,
    script: Option<PathBuf>,
}

impl MotoBuilder {
    /// New ECS services report `count` running tasks (moto's
    /// `MOTO_ECS_SERVICE_RUNNING`): without it no service ever finishes rolling out.
    pub fn ecs_service_running(self, count: u32) -> Self {
        self.env("MOTO_ECS_SERVICE_RUNNING", count.to_string())
    }

    /// Any other setting of moto's environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs moto through this Python script (same arguments as
    /// `moto_server`) with the venv's interpreter, instead of `moto_plus.py`.
    pub(crate) fn script(mut self, path: PathBuf) -> Self {
        self.script = Some(path);
        self
    }

    pub fn start(self) -> Result<Moto> {
        let binary = moto_binary()?;
        let dir = process::temp_dir("moto")?;
        let script = self
            .script
            .clone()
            .unwrap_or_else(|| process::repo_root().join("tests/harness/moto_plus.py"));
        // The venv's python sits beside its moto_server.
        let mut cmd = Command::new(binary.with_file_name("python"));
        cmd.arg(script);
        cmd.args(["-H", "127.0.0.1", "-p", "0"])
            .current_dir(dir.path())
            // The port line is parsed from the log: it must not sit in a buffer.
            .env("PYTHONUNBUFFERED", "1")
            // Without it AWS-managed policies cannot be attached (NoSuchEntity).
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut proc = Proc::spawn(COMPONENT, cmd, &dir.path().join("moto.log"))?;
        let log_path = proc.log_path().to_path_buf();
        let port = proc.wait_ready(START_TIMEOUT, || {
            let log = process::log_tail(&log_path);
            let port = parse_port(&log).ok_or("no port printed yet")?;
            let answer = http::get(&Target::Tcp(format!("127.0.0.1:{port}")), "/moto-api/")
                .map_err(|e| e.to_string())?;
            match answer.status {
                200 => Ok(port),
                other => Err(format!("GET /moto-api/ answered {other}")),
            }
        })?;
        Ok(Moto {
            proc,
            port,
            _dir: dir,
        })
    }
}

/// A running moto server on 127.0.0.1, stopped on drop. Each test may start
/// its own (about 50 MB, under a second) or share one and [`Moto::reset`] it.
#[derive(Debug)]
pub struct Moto {
    // Declared before the dir so the process stops before its dir goes away.
    proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto with the default settings.
    pub fn start() -> Result<Self> {
        Self::builder().start()
    }

    pub fn builder() -> MotoBuilder {
        MotoBuilder {
            env: Vec::new(),
            script: None,
        }
    }

    /// `http://127.0.0.1:<port>`: the value for `AWS_ENDPOINT_URL` or an SDK's `endpoint_url`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The environment an AWS SDK client or a child process (`stackctl`) needs
    /// to talk to this server and nothing else.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// Points a child process at this server: removes every inherited `AWS_*`
    /// variable first (a profile, a session token or a per-service endpoint
    /// such as `AWS_ENDPOINT_URL_SQS` would otherwise win), then sets [`Moto::aws_env`].
    pub fn configure_command<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.aws_env())
    }

    /// Wipes every resource in every service (`POST /moto-api/reset`).
    pub fn reset(&self) -> Result<()> {
        http::request(&self.target(), "POST", "/moto-api/reset", None)?
            .success("moto reset")
            .map(drop)
    }

    /// Imports `cert` into ACM (ImportCertificate, with its CA as the
    /// chain) and returns the certificate's ARN.
    pub fn import_certificate(&self, cert: &crate::TestCertificate) -> Result<String> {
        use base64::Engine as _;
        let pem = |path: &std::path::Path| -> Result<String> {
            std::fs::read(path)
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
                .map_err(|source| crate::Error::Io {
                    what: format!("reading {}", path.display()),
                    source,
                })
        };
        let body = serde_json::json!({
            "Certificate": pem(&cert.cert)?,
            "PrivateKey": pem(&cert.key)?,
            "CertificateChain": pem(&cert.ca)?,
        });
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20260101/{REGION}/acm/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        let answer = http::request_with(
            &self.target(),
            "POST",
            "/",
            &[
                ("X-Amz-Target", "CertificateManager.ImportCertificate"),
                // moto routes by the credential scope's service; it checks
                // no signature.
                ("Authorization", &authorization),
            ],
            Some(("application/x-amz-json-1.1", body.to_string().as_bytes())),
        )?
        .success("ACM ImportCertificate")?;
        let parsed: serde_json::Value =
            serde_json::from_str(&answer.text()).unwrap_or(serde_json::Value::Null);
        parsed["CertificateArn"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| crate::Error::Command {
                command: "ACM ImportCertificate".into(),
                status: "no CertificateArn".into(),
                output: answer.text(),
            })
    }

    /// Sets moto's state-manager transition for `model` (e.g. `ecs::task`);
    /// `transition` is moto's JSON, e.g. `{"progression": "manual", "times": 1000000}`.
    pub fn set_transition(&self, model: &str, transition: serde_json::Value) -> Result<()> {
        let body = serde_json::json!({ "model_name": model, "transition": transition });
        http::post_json(
            &self.target(),
            "/moto-api/state-manager/set-transition",
            &body.to_string(),
        )?
        .success(format!("moto set-transition for {model}"))
        .map(drop)
    }

    /// Keeps ECS tasks RUNNING: by default every describe_tasks moves a task
    /// one step toward STOPPED.
    pub fn keep_ecs_tasks_running(&self) -> Result<()> {
        self.set_transition(
            "ecs::task",
            serde_json::json!({ "progression": "manual", "times": 1_000_000 }),
        )
    }

    /// The server's recent output.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    fn target(&self) -> Target {
        Target::Tcp(format!("127.0.0.1:{}", self.port))
    }
}

/// `$MOTO_SERVER`, else the repo's `.venv-moto` (made by `scripts/test`), else `PATH`.
fn moto_binary() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(explicit) = std::env::var_os("MOTO_SERVER") {
        candidates.push(PathBuf::from(explicit));
    }
    candidates.push(process::repo_root().join(".venv-moto/bin/moto_server"));
    process::find_binary(COMPONENT, "PyPI package `moto[server]`", &candidates)
}

/// The Python interpreter of moto's venv (it has boto3 and the AWS CLI).
pub fn venv_python() -> Result<PathBuf> {
    Ok(moto_binary()?.with_file_name("python"))
}

fn parse_port(log: &str) -> Option<u16> {
    let rest = &log[log.find(PORT_MARKER)? + PORT_MARKER.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_port_from_colored_werkzeug_output() {
        let log = "\u{1b}[31mWARNING: dev server\u{1b}[0m\n * Running on http://127.0.0.1:44863\n";
        assert_eq!(parse_port(log), Some(44863));
        assert_eq!(parse_port(" * Serving Flask app"), None);
    }
}
