//! An AWS stack that really runs on this machine: moto as the control plane
//! and a data plane that runs, as podman containers, what moto says should
//! run (`tests/harness/dataplane/`, Python on the moto venv's boto3).
//!
//! - moto runs with `dataplane/moto_dataplane.py`: ECS services report the
//!   containers that really run (so `up`'s waits wait for them), ElastiCache
//!   deletes finish and subnet groups can be deleted, as on AWS.
//! - A `docker-registry` stands in for ECR: `up --registry-endpoint` pushes
//!   to it ([`AwsEmulator::configure_command`] sets that option), and the
//!   data plane pulls ECR URIs from it.
//! - `dataplane/dataplane.py` converges containers to moto: ECS service tasks
//!   (task definition image, environment, SSM secrets, rolling updates,
//!   replacement of exited tasks), one emulated EC2 host per InService Auto
//!   Scaling instance that runs the launch template's user data unchanged
//!   (`instance-boot.sh`), a real `redis-server` per ElastiCache group, a
//!   listener process per load balancer listener (TCP forwarding for network
//!   load balancers; for application ones an HTTP proxy that applies the
//!   listener's rules and terminates HTTPS with its ACM certificate), and
//!   container output shipped to CloudWatch Logs. A task runs every
//!   container of its task definition (the others in the first one's
//!   network namespace). Containers trust the region's ACM certificates;
//!   `public.ecr.aws` images come from the registry, where
//!   [`AwsEmulatorBuilder::otel_collector`] puts a stand-in for the AWS
//!   Distro for OpenTelemetry collector. Its status API tells tests what runs
//!   ([`AwsEmulator::status`]), listeners included (`load_balancers`).
//!
//! The product never knows: it only reads and writes AWS APIs.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::{self, Target};
use crate::moto::{ACCESS_KEY_ID, Moto, REGION, SECRET_ACCESS_KEY};
use crate::process::{self, Proc, START_TIMEOUT};
use crate::registry::Registry;

const COMPONENT: &str = "aws data plane";
const READY_MARKER: &str = "dataplane ready: http://127.0.0.1:";
const POLL: Duration = Duration::from_millis(250);

/// Options for [`AwsEmulator`]; start with [`AwsEmulator::builder`].
#[derive(Debug, Default, Clone)]
pub struct AwsEmulatorBuilder {
    forward: Vec<u16>,
    otel_collector: Option<(String, u16)>,
}

impl AwsEmulatorBuilder {
    /// Makes a loopback port of this machine (a step service, say) reachable
    /// from every container at [`AwsEmulator::gateway`] on the same port.
    pub fn forward(mut self, port: u16) -> Self {
        self.forward.push(port);
        self
    }

    /// Serves `image` (a `public.ecr.aws/...` reference: the collector the
    /// stack's task definitions and executor hosts run) as a stand-in that
    /// takes OTLP/HTTP on port 4318, as the collector does, and relays it
    /// to the loopback port `otlp_port` (an [`crate::OtlpReceiver`]'s)
    /// instead of exporting to X-Ray, which cannot be had here.
    pub fn otel_collector(mut self, image: &str, otlp_port: u16) -> Self {
        self.otel_collector = Some((image.to_string(), otlp_port));
        self
    }

    pub fn start(self) -> Result<AwsEmulator> {
        for (binary, package) in [
            ("podman", "Debian package `podman`"),
            ("runc", "Debian package `runc`"),
            ("redis-server", "Debian package `redis-server`"),
            ("unshare", "Debian package `util-linux`"),
            ("nsenter", "Debian package `util-linux`"),
        ] {
            process::find_binary(binary, package, &[])?;
        }
        let dataplane_dir = process::repo_root().join("tests/harness/dataplane");
        // podman refuses a run root longer than 50 characters: keep the
        // state (instance engines live under it) at a short path.
        let state = tempfile::Builder::new()
            .prefix("dp")
            .tempdir_in("/tmp")
            .map_err(|e| Error::io("create the data plane's state dir", e))?;
        let moto = Moto::builder()
            .script(dataplane_dir.join("moto_dataplane.py"))
            .env("DATAPLANE_STATE_DIR", state.path().display().to_string())
            .start()?;
        let registry = Registry::start()?;
        let python = crate::moto::venv_python()?;
        // Prefix of the data plane's containers and network: unique per emulator.
        let name = state
            .path()
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_lowercase();

        let mut cmd = Command::new(&python);
        cmd.arg(dataplane_dir.join("dataplane.py"))
            .arg("--endpoint")
            .arg(moto.endpoint())
            .arg("--registry")
            .arg(registry.host_port())
            .arg("--state-dir")
            .arg(state.path())
            .args(["--name", &name, "--region", REGION])
            .env("PYTHONUNBUFFERED", "1")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
        for port in &self.forward {
            cmd.arg("--forward").arg(port.to_string());
        }
        if let Some((image, port)) = &self.otel_collector {
            cmd.arg("--otel-collector").arg(format!("{image}={port}"));
        }
        let log_path = state.path().join("dataplane.log");
        let mut proc = Proc::spawn(COMPONENT, cmd, &log_path)?;
        let (port, gateway) = proc.wait_ready(START_TIMEOUT, || {
            let log = process::log_tail(&log_path);
            let line = log
                .lines()
                .find_map(|l| l.strip_prefix(READY_MARKER))
                .ok_or("not ready yet")?;
            let (port, rest) = line.split_once(' ').ok_or("no gateway in the ready line")?;
            let gateway = rest.trim().strip_prefix("gateway ").ok_or("no gateway")?;
            let port: u16 = port.parse().map_err(|_| format!("bad port {port}"))?;
            Ok((port, gateway.to_owned()))
        })?;
        Ok(AwsEmulator {
            dataplane: proc,
            status: Target::Tcp(format!("127.0.0.1:{port}")),
            gateway,
            name,
            python,
            dataplane_dir,
            moto,
            registry,
            state,
        })
    }
}

/// A running emulated AWS: moto, the registry and the data plane. Dropping it
/// stops the data plane (which removes its containers, instances and
/// redis-servers), then moto and the registry.
#[derive(Debug)]
pub struct AwsEmulator {
    // Declared first: the data plane stops before moto and the registry.
    dataplane: Proc,
    status: Target,
    gateway: String,
    name: String,
    python: PathBuf,
    dataplane_dir: PathBuf,
    moto: Moto,
    registry: Registry,
    state: tempfile::TempDir,
}

impl AwsEmulator {
    pub fn start() -> Result<Self> {
        Self::builder().start()
    }

    pub fn builder() -> AwsEmulatorBuilder {
        AwsEmulatorBuilder::default()
    }

    pub fn moto(&self) -> &Moto {
        &self.moto
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The address at which containers reach the ports given to
    /// [`AwsEmulatorBuilder::forward`].
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Points a `stackctl` command at this emulator: moto's AWS environment
    /// and `STACKCTL_REGISTRY_ENDPOINT` (the documented `--registry-endpoint`
    /// of `up`), so the engine image goes to the registry the data plane pulls from.
    pub fn configure_command<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        self.moto
            .configure_command(cmd)
            .env("STACKCTL_REGISTRY_ENDPOINT", self.registry.url())
    }

    /// The data plane's view: `containers` (kind `task` with `service`,
    /// `instance` for an EC2 host, others with the `instance` that runs them),
    /// `instances` (with `boot`: booting, ok or failed), `redis` (ElastiCache
    /// groups), `memorydb` (MemoryDB clusters: name, address, nodes, tls, acl,
    /// users), `services`
    /// (a loopback address per ECS service), `step_image` (an image in "ECR"
    /// for docker steps), `replaced` and `errors`.
    pub fn status(&self) -> Result<Value> {
        let answer = http::get(&self.status, "/status")?.success("data plane status")?;
        serde_json::from_slice(&answer.body).map_err(|e| Error::Status {
            what: "data plane status".into(),
            status: answer.status,
            body: e.to_string(),
        })
    }

    /// Polls the status until `check` returns `Ok`; `Err(reason)` while not
    /// there yet. The error names the last reason and the data plane's log.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let started = Instant::now();
        loop {
            let reason = match self.status() {
                Ok(status) => match check(&status) {
                    Ok(value) => return Ok(value),
                    Err(reason) => reason,
                },
                Err(e) => e.to_string(),
            };
            if started.elapsed() > timeout {
                return Err(Error::NotReady {
                    component: COMPONENT,
                    waited: started.elapsed(),
                    reason: format!("{what}: {reason}"),
                    log_path: self.dataplane.log_path().to_path_buf(),
                    log: self.dataplane.log(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// The loopback address of an ECS service's containers (round robin).
    pub fn service_address(&self, service: &str) -> Result<String> {
        self.wait_for(
            &format!("an address for service {service}"),
            START_TIMEOUT,
            |s| {
                s["services"][service]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("no service {service} yet"))
            },
        )
    }

    /// SIGKILL to a container (by name or id), whichever engine runs it.
    pub fn kill_container(&self, container: &str) -> Result<()> {
        self.container_action(container, "kill")
    }

    /// Freezes a container's processes (`podman pause`): a hung process
    /// that still counts as running.
    pub fn pause_container(&self, container: &str) -> Result<()> {
        self.container_action(container, "pause")
    }

    /// Thaws a container frozen by [`Self::pause_container`].
    pub fn unpause_container(&self, container: &str) -> Result<()> {
        self.container_action(container, "unpause")
    }

    fn container_action(&self, container: &str, action: &str) -> Result<()> {
        http::request(
            &self.status,
            "POST",
            &format!("/containers/{container}/{action}"),
            None,
        )?
        .success(format!("{action} container {container}"))
        .map(drop)
    }

    /// The AWS CLI (from moto's venv) pointed at this emulator's moto.
    pub fn aws_cli(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        self.moto.configure_command(&mut cmd);
        // AWS CLI v1 reads the region from AWS_DEFAULT_REGION only.
        cmd.env("AWS_DEFAULT_REGION", REGION).args(["-m", "awscli"]);
        cmd
    }

    /// The data plane's recent output.
    pub fn log(&self) -> String {
        self.dataplane.log()
    }
}

impl Drop for AwsEmulator {
    fn drop(&mut self) {
        self.dataplane.stop();
        // Whatever a data plane that did not stop in time left behind.
        let _ = process::run(
            Command::new(&self.python)
                .arg(self.dataplane_dir.join("dataplane.py"))
                .args(["--cleanup", "--endpoint", "-", "--registry", "-"])
                .arg("--state-dir")
                .arg(self.state.path())
                .args(["--name", &self.name]),
        );
    }
}
