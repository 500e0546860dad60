//! Podman's Docker-compatible API on a unix socket (there is no Docker daemon
//! on these machines), with its own storage so parallel tests share nothing,
//! and images built from busybox-static without any registry.
//!
//! What running podman as root here takes (found out on Debian 12, podman 4.3):
//! the runtime must be `runc` (crun fails on this kernel's hybrid cgroups), the
//! cgroup manager `cgroupfs` and the events logger `file` (no systemd), and
//! every container needs explicit `nofile`/`nproc` ulimits, because podman's
//! root defaults exceed the hard limits of this sandbox ("setrlimit: operation
//! not permitted"). Storage is `vfs` so a killed test leaves no mounts behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::http::{self, Response, Target};
use crate::process::{self, Proc, START_TIMEOUT};

const COMPONENT: &str = "podman";

/// A running `podman system service` whose storage, run state, locks and
/// network configs live in a temp dir. Dropping it removes every container it
/// made, stops the service and deletes the dir.
#[derive(Debug)]
pub struct Podman {
    // Declared before the dir so the service stops before its dir goes away.
    proc: Proc,
    binary: PathBuf,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn start() -> Result<Self> {
        Self::start_with_insecure_registries(&[])
    }

    /// Like [`Podman::start`], trusting these plain-HTTP registries
    /// (`127.0.0.1:<port>`, e.g. a [`crate::Registry`]'s `host_port()`) for
    /// pulls through the API, which has no `--tls-verify=false`.
    pub fn start_with_insecure_registries(registries: &[String]) -> Result<Self> {
        let binary = process::find_binary(COMPONENT, "Debian package `podman`", &[])?;
        // podman finds runc itself; checking here turns its vague error into ours.
        process::find_binary("runc", "Debian package `runc`", &[])?;
        let dir = process::temp_dir("podman")?;
        for sub in ["root", "runroot", "tmp", "networks"] {
            std::fs::create_dir_all(dir.path().join(sub))
                .map_err(|e| Error::io(format!("create {sub} in {}", dir.path().display()), e))?;
        }
        let conf = dir.path().join("containers.conf");
        std::fs::write(&conf, containers_conf(dir.path()))
            .map_err(|e| Error::io(format!("write {}", conf.display()), e))?;
        if !registries.is_empty() {
            let path = dir.path().join(REGISTRIES_CONF);
            std::fs::write(&path, registries_conf(registries))
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
        let socket = dir.path().join("podman.sock");

        let mut cmd = base_command(&binary, dir.path());
        cmd.args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()));
        let mut proc = Proc::spawn(COMPONENT, cmd, &dir.path().join("podman.log"))?;
        let target = Target::Unix(socket.clone());
        proc.wait_ready(START_TIMEOUT, || {
            if !socket.exists() {
                return Err("socket not created yet".to_owned());
            }
            let answer = http::get(&target, "/version").map_err(|e| e.to_string())?;
            match answer.status {
                200 => Ok(()),
                other => Err(format!("GET /version answered {other}")),
            }
        })?;
        Ok(Podman {
            proc,
            binary,
            socket,
            dir,
        })
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// `unix://<socket>`: the value for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The API's address for [`crate::http`] calls.
    pub fn target(&self) -> Target {
        Target::Unix(self.socket.clone())
    }

    /// `GET <path>` on the Docker API, e.g. `/version`.
    pub fn get(&self, path: &str) -> Result<Response> {
        http::get(&self.target(), path)
    }

    /// `POST <path>` with a JSON body on the Docker API.
    pub fn post_json(&self, path: &str, json: &str) -> Result<Response> {
        http::post_json(&self.target(), path, json)
    }

    /// Any request on the Docker API (`DELETE /containers/<id>?force=true`, ...).
    pub fn request(&self, method: &str, path: &str) -> Result<Response> {
        http::request(&self.target(), method, path, None)
    }

    /// The podman CLI on this instance's storage, for what the API lacks.
    pub fn cli(&self) -> Command {
        base_command(&self.binary, self.dir.path())
    }

    /// Makes an image `localhost/<name>:latest` (or `name` as given when it
    /// has a registry part or tag) from busybox-static: `/bin/busybox`, its
    /// applets as symlinks, `PATH=/bin`, `CMD ["/bin/sh"]`. No registry or
    /// network is involved (`podman import` of a rootfs tar). Returns the reference.
    pub fn busybox_image(&self, name: &str) -> Result<String> {
        let busybox = process::find_binary(
            "busybox",
            "Debian package `busybox-static`",
            &[PathBuf::from("/bin/busybox")],
        )?;
        let reference = image_reference(name);
        let work = tempfile::Builder::new()
            .prefix("busybox-image-")
            .tempdir_in(self.dir.path())
            .map_err(|e| Error::io("create an image work dir", e))?;
        let rootfs = work.path().join("rootfs");
        let applets = process::run(Command::new(&busybox).arg("--list"))?;
        build_rootfs(&rootfs, &busybox, applets.lines())?;

        let tar = work.path().join("rootfs.tar");
        process::run(
            Command::new("tar")
                .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
                .arg(&rootfs)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        )?;
        process::run(
            self.cli()
                .args(["import", "--quiet"])
                .args(["--change", "ENV PATH=/bin"])
                .args(["--change", r#"CMD ["/bin/sh"]"#])
                .arg(&tar)
                .arg(&reference),
        )?;
        Ok(reference)
    }

    /// The service's recent output.
    pub fn log(&self) -> String {
        self.proc.log()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // conmon outlives the service: without this, running containers (and
        // their processes) would survive the test.
        let _ = process::run(self.cli().args(["rm", "--all", "--force", "--time", "0"]));
        self.proc.stop();
    }
}

/// `podman` with every global flag and config that isolates this instance.
fn base_command(binary: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(binary);
    // CONTAINERS_CONF replaces every other containers.conf: the host's cannot
    // leak in (e.g. `runtime = "crun"` from Debian's libpod.conf defaults).
    let registries = dir.join(REGISTRIES_CONF);
    if registries.exists() {
        cmd.env("CONTAINERS_REGISTRIES_CONF", registries);
    }
    cmd.env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env_remove("CONTAINER_HOST")
        .env_remove("CONTAINER_CONNECTION")
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .arg("--tmpdir")
        .arg(dir.join("tmp"))
        .args(["--storage-driver", "vfs"]);
    cmd
}

const REGISTRIES_CONF: &str = "registries.conf";

fn registries_conf(insecure: &[String]) -> String {
    insecure
        .iter()
        .map(|r| format!("[[registry]]\nlocation = \"{r}\"\ninsecure = true\n"))
        .collect()
}

fn containers_conf(dir: &Path) -> String {
    format!(
        "[engine]\n\
         runtime = \"runc\"\n\
         cgroup_manager = \"cgroupfs\"\n\
         events_logger = \"file\"\n\
         # file locks live in --tmpdir; shm locks would be shared by every instance\n\
         lock_type = \"file\"\n\
         [network]\n\
         network_config_dir = \"{networks}\"\n",
        networks = dir.join("networks").display()
    )
}

fn image_reference(name: &str) -> String {
    let qualified = if name.contains('/') {
        name.to_owned()
    } else {
        format!("localhost/{name}")
    };
    let last = qualified.rsplit('/').next().unwrap_or_default();
    if last.contains(':') || last.contains('@') {
        qualified
    } else {
        format!("{qualified}:latest")
    }
}

fn build_rootfs<'a>(
    rootfs: &Path,
    busybox: &Path,
    applets: impl Iterator<Item = &'a str>,
) -> Result<()> {
    let io = |what: String| move |e| Error::io(what, e);
    for sub in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        let path = rootfs.join(sub);
        std::fs::create_dir_all(&path).map_err(io(format!("create {}", path.display())))?;
    }
    let bin = rootfs.join("bin");
    std::fs::copy(busybox, bin.join("busybox"))
        .map_err(io(format!("copy {}", busybox.display())))?;
    for applet in applets
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        std::os::unix::fs::symlink("busybox", bin.join(applet))
            .map_err(io(format!("link applet {applet}")))?;
    }
    let files = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
    ];
    for (path, content) in files {
        std::fs::write(rootfs.join(path), content).map_err(io(format!("write {path}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_get_localhost_and_latest() {
        assert_eq!(image_reference("bb"), "localhost/bb:latest");
        assert_eq!(image_reference("bb:v1"), "localhost/bb:v1");
        assert_eq!(
            image_reference("127.0.0.1:5000/x/bb"),
            "127.0.0.1:5000/x/bb:latest"
        );
    }
}
