//! A real `redis-server` (the ElastiCache stand-in) on a free loopback port,
//! with a raw RESP client for readiness checks and simple assertions, and
//! stop/start on the same port for reconnect and durability tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::{self, Proc, START_TIMEOUT};

const COMPONENT: &str = "redis-server";
const START_ATTEMPTS: usize = 5;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Options for [`RedisServer`]; start with [`RedisServer::builder`].
#[derive(Debug, Clone, Default)]
pub struct RedisBuilder {
    appendonly: bool,
    dir: Option<PathBuf>,
    password: Option<String>,
    cluster: bool,
    args: Vec<String>,
}

impl RedisBuilder {
    /// `appendonly yes` (fsync every second, redis's default policy): data
    /// written before a stop survives a restart.
    pub fn appendonly(mut self, on: bool) -> Self {
        self.appendonly = on;
        self
    }

    /// Where redis keeps its files. Default: a temp dir owned by the server.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Clients must `AUTH` with this (`requirepass`). Keep it URL-safe: it is
    /// put into [`RedisServer::url`] as is.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Cluster mode (MemoryDB's shape): a one-node Redis Cluster serving
    /// all 16384 slots, ready once CLUSTER INFO says `cluster_state:ok`. Its
    /// node file lives in the data dir, so a restart keeps the slots.
    pub fn cluster(mut self, on: bool) -> Self {
        self.cluster = on;
        self
    }

    /// Any other `redis-server` argument, e.g. `["--maxmemory", "10mb"]`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn start(self) -> Result<RedisServer> {
        let binary = process::find_binary(COMPONENT, "Debian package `redis-server`", &[])?;
        let temp = process::temp_dir("redis")?;
        let mut server = RedisServer {
            proc: None,
            port: 0,
            binary,
            options: self,
            starts: 0,
            temp,
        };
        // The free port can be taken between our probe and redis's bind: pick
        // another one and try again.
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            server.port = process::free_port()?;
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(err) if is_address_in_use(&err) => last_error = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_error.expect("at least one start attempt"))
    }
}

/// A running `redis-server` on 127.0.0.1. Dropping it stops it and removes its
/// temp dir; [`RedisServer::stop`] and [`RedisServer::start_again`] keep the
/// port and the data dir.
#[derive(Debug)]
pub struct RedisServer {
    // Declared before the temp dir so the process stops before its dir goes away.
    proc: Option<Proc>,
    port: u16,
    binary: PathBuf,
    options: RedisBuilder,
    starts: usize,
    temp: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a plain server: no persistence, no password.
    pub fn start() -> Result<Self> {
        Self::builder().start()
    }

    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    /// `redis://127.0.0.1:<port>/`, with `:<password>@` when one is set.
    pub fn url(&self) -> String {
        match &self.options.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn password(&self) -> Option<&str> {
        self.options.password.as_deref()
    }

    /// Where redis keeps its files (the AOF with `appendonly`).
    pub fn data_dir(&self) -> &Path {
        self.options
            .dir
            .as_deref()
            .unwrap_or_else(|| self.temp.path())
    }

    pub fn is_running(&mut self) -> bool {
        self.proc
            .as_mut()
            .is_some_and(|proc| proc.check_alive().is_ok())
    }

    /// Sends one command over a fresh connection (after `AUTH` when a password
    /// is set) and returns redis's reply. Error replies are `Reply::Error`.
    pub fn command(&self, args: &[&str]) -> Result<Reply> {
        let fail = |detail: String| Error::Redis {
            addr: self.addr(),
            detail,
        };
        let stream = TcpStream::connect(self.addr()).map_err(|e| fail(format!("connect: {e}")))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| fail(e.to_string()))?;
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| fail(e.to_string()))?);
        let mut writer = stream;
        if let Some(password) = &self.options.password {
            match round_trip(&mut writer, &mut reader, &["AUTH", password]).map_err(fail)? {
                Reply::Simple(_) => {}
                other => return Err(fail(format!("AUTH answered {other:?}"))),
            }
        }
        round_trip(&mut writer, &mut reader, args).map_err(fail)
    }

    /// Stops the server gracefully (SIGTERM: redis flushes its AOF). The port
    /// and data dir are kept for [`RedisServer::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.stop();
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Starts a stopped server again on the same port and data dir. Waits (up
    /// to the start timeout) while something else briefly holds the port.
    pub fn start_again(&mut self) -> Result<()> {
        self.stop();
        let started = Instant::now();
        loop {
            match self.spawn_and_wait() {
                Err(err) if is_address_in_use(&err) && started.elapsed() < START_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// [`RedisServer::stop`] then [`RedisServer::start_again`].
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.start_again()
    }

    /// The server's recent output.
    pub fn log(&self) -> String {
        self.proc
            .as_ref()
            .map(Proc::log)
            .unwrap_or_else(|| String::from("(not running)"))
    }

    fn spawn_and_wait(&mut self) -> Result<()> {
        self.starts += 1;
        let data_dir = self.data_dir().to_path_buf();
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args([
                "--appendonly",
                if self.options.appendonly { "yes" } else { "no" },
            ])
            .arg("--dir")
            .arg(&data_dir)
            .args(["--daemonize", "no", "--logfile", ""]);
        if let Some(password) = &self.options.password {
            cmd.args(["--requirepass", password]);
        }
        if self.options.cluster {
            cmd.args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(data_dir.join("nodes.conf"));
        }
        cmd.args(&self.options.args);
        // One log per start, so an error shows this start's output only.
        let log_path = self.temp.path().join(format!("redis-{}.log", self.starts));
        let mut proc = Proc::spawn(COMPONENT, cmd, &log_path)?;
        let ping = || match self.command(&["PING"]) {
            Ok(Reply::Simple(pong)) if pong == "PONG" => Ok(()),
            Ok(other) => Err(format!("PING answered {other:?}")),
            Err(err) => Err(err.to_string()),
        };
        proc.wait_ready(START_TIMEOUT, ping)?;
        if self.options.cluster {
            proc.wait_ready(START_TIMEOUT, || self.serve_all_slots())?;
        }
        self.proc = Some(proc);
        Ok(())
    }

    /// Assigns every slot to this node unless it serves them already (a
    /// restart reads them from its node file); Ok once the cluster is up.
    fn serve_all_slots(&self) -> std::result::Result<(), String> {
        let text = match self.command(&["CLUSTER", "INFO"]) {
            Ok(reply) => reply
                .as_text()
                .ok_or(format!("CLUSTER INFO answered {reply:?}"))?,
            Err(err) => return Err(err.to_string()),
        };
        if text.contains("cluster_state:ok") {
            return Ok(());
        }
        if text.contains("cluster_slots_assigned:0") {
            match self.command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]) {
                Ok(Reply::Simple(_)) => {}
                Ok(other) => return Err(format!("CLUSTER ADDSLOTSRANGE answered {other:?}")),
                Err(err) => return Err(err.to_string()),
            }
        }
        Err(format!(
            "cluster not up yet: {}",
            text.lines().next().unwrap_or("")
        ))
    }
}

fn is_address_in_use(err: &Error) -> bool {
    matches!(err, Error::Exited { log, .. } if log.contains("Address already in use"))
}

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is redis's nil.
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a simple or bulk string reply.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Simple(text) => Some(text.clone()),
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }
}

fn round_trip(
    writer: &mut impl Write,
    reader: &mut impl BufRead,
    args: &[&str],
) -> std::result::Result<Reply, String> {
    let mut frame = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        frame.extend_from_slice(arg.as_bytes());
        frame.extend_from_slice(b"\r\n");
    }
    writer
        .write_all(&frame)
        .and_then(|()| writer.flush())
        .map_err(|e| format!("send: {e}"))?;
    read_reply(reader)
}

fn read_reply(reader: &mut impl BufRead) -> std::result::Result<Reply, String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| format!("connection closed or bad line {line:?}"))?;
    let (kind, rest) = line.split_at_checked(1).ok_or("empty reply line")?;
    let number = || {
        rest.parse::<i64>()
            .map_err(|e| format!("bad number {rest:?}: {e}"))
    };
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => Ok(Reply::Integer(number()?)),
        "$" => match usize::try_from(number()?) {
            Err(_) => Ok(Reply::Bulk(None)),
            Ok(len) => {
                let mut bytes = vec![0; len + 2];
                reader
                    .read_exact(&mut bytes)
                    .map_err(|e| format!("read bulk: {e}"))?;
                bytes.truncate(len);
                Ok(Reply::Bulk(Some(bytes)))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Ok(Reply::Array(None)),
            Ok(len) => (0..len)
                .map(|_| read_reply(reader))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(|items| Reply::Array(Some(items))),
        },
        other => Err(format!("unknown reply type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_reply_type() {
        let wire = b"+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n*-1\r\n";
        let mut reader = &wire[..];
        let replies: Vec<Reply> = (0..7).map(|_| read_reply(&mut reader).unwrap()).collect();
        assert_eq!(
            replies,
            vec![
                Reply::Simple("OK".into()),
                Reply::Error("ERR no".into()),
                Reply::Integer(42),
                Reply::Bulk(Some(b"abc".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![Reply::Integer(1), Reply::Bulk(Some(Vec::new()))])),
                Reply::Array(None),
            ]
        );
    }
}
