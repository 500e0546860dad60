//! `stackctl-engine runs-client`: one runs-API request served inside a
//! stack's network by a one-off task, for operators whose machine cannot
//! reach the runs API (an AWS stack whose event API has no address outside
//! its VPC, or whose load balancer publishes only `/e/*` and `/health`).
//!
//! The task opens the backends of its engine configuration and answers the
//! request with the event API's own router, served on a loopback port for
//! the one request: the same handlers, checks and answers as the runs API,
//! without depending on the deployed event API's address or on what a load
//! balancer publishes. The answer is printed as JSON lines tagged
//! `runs_client`, the body cut into pieces that stay far below the 16 KiB
//! at which container runtimes split log lines; [`Collector`] puts them
//! back together.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ApiState, router, serve};
use crate::Shutdown;
use crate::config::Config;
use crate::metrics::Metrics;

/// Body bytes per printed line: escaped as JSON (at worst 6 bytes a byte)
/// a line stays under 16 KiB.
const PIECE: usize = 2048;
/// How long the one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One request, as `--request` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// `GET` or `POST`.
    pub method: String,
    /// Path and query under the event API, e.g. `/v1/runs?limit=5`.
    pub path: String,
    /// A JSON body to send, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// One printed line of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// The answer's HTTP status.
    pub status: u16,
    /// This piece's index, from 0.
    pub part: usize,
    /// How many pieces the body has.
    pub of: usize,
    /// This piece of the body (text).
    pub body: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    runs_client: Piece,
}

/// The lines that print `status` and `body`.
pub fn answer_lines(status: u16, body: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let mut cut = rest.len().min(PIECE);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece.to_string());
        rest = tail;
    }
    if pieces.is_empty() {
        pieces.push(String::new());
    }
    let of = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(part, body)| {
            let line = Line {
                runs_client: Piece {
                    status,
                    part,
                    of,
                    body,
                },
            };
            serde_json::to_string(&line).expect("a piece serializes")
        })
        .collect()
}

/// Gathers the answer from a task's log lines (others are ignored).
#[derive(Debug, Default)]
pub struct Collector {
    pieces: Vec<Piece>,
}

impl Collector {
    /// Takes one log line.
    pub fn push(&mut self, line: &str) {
        if let Ok(l) = serde_json::from_str::<Line>(line.trim()) {
            self.pieces.push(l.runs_client);
        }
    }

    /// The status and body, once every piece arrived.
    pub fn finish(mut self) -> Result<(u16, String), String> {
        let Some(first) = self.pieces.first() else {
            return Err("the task printed no answer".into());
        };
        let (status, of) = (first.status, first.of);
        self.pieces.sort_by_key(|p| p.part);
        self.pieces.dedup_by_key(|p| p.part);
        if self.pieces.len() != of || self.pieces.iter().enumerate().any(|(i, p)| p.part != i) {
            return Err(format!(
                "the task's answer is incomplete: {} of {of} pieces in its log",
                self.pieces.len()
            ));
        }
        Ok((status, self.pieces.into_iter().map(|p| p.body).collect()))
    }
}

/// `runs-client --request JSON`: answers the request (see the module docs)
/// and prints it. Exit 0 when there is an answer (whatever its status), 1
/// when the backends or the request failed, 2 on bad arguments.
pub fn main(args: &[OsString]) -> ExitCode {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let json = match args.as_slice() {
        [flag, value] if flag == "--request" => value.clone(),
        [one] if one.starts_with("--request=") => one["--request=".len()..].to_string(),
        _ => {
            eprintln!("error: expected --request JSON (see stackctl-engine --help)");
            return ExitCode::from(2);
        }
    };
    let request: Request = match serde_json::from_str(&json) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --request: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(answer(&request)) {
        Ok((status, body)) => {
            for line in answer_lines(status, &body) {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Answers `request` with the runs API over this process's configuration.
pub async fn answer(request: &Request) -> Result<(u16, String), String> {
    let mut config = Config::load_from_process(None).map_err(|e| e.to_string())?;
    // A task whose role holds no runs-API token (the runner's) still
    // answers: the caller is whoever could start the task.
    let token = config
        .api_token
        .get_or_insert_with(|| ulid::Ulid::new().to_string())
        .clone();
    answer_with(Arc::new(config), &token, request).await
}

/// Answers `request` with the runs API over `config`'s backends.
pub async fn answer_with(
    config: Arc<Config>,
    token: &str,
    request: &Request,
) -> Result<(u16, String), String> {
    let backends = crate::backend::open(&config.backend, &config.queues)
        .await
        .map_err(|e| format!("cannot open the backends: {e}"))?;
    let state = ApiState::new(config, backends, Arc::new(Metrics::new()), "event-api");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on loopback: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the loopback address: {e}"))?;
    let shutdown = Shutdown::new();
    let server = tokio::spawn(serve(listener, router(state), shutdown.clone()));
    let result = send(&format!("http://{addr}"), token, request).await;
    shutdown.cancel();
    let _ = server.await;
    result
}

async fn send(base: &str, token: &str, request: &Request) -> Result<(u16, String), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
        .map_err(|e| format!("method `{}`: {e}", request.method))?;
    let mut req = client
        .request(method, format!("{base}{}", request.path))
        .bearer_auth(token);
    if let Some(body) = &request.body {
        req = req.json(body);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{} {}: {e}", request.method, request.path))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| {
        format!(
            "{} {}: reading the answer: {e}",
            request.method, request.path
        )
    })?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_survive_being_cut_into_lines() {
        let body = format!("{{\"x\": \"{}é\"}}", "\"\n".repeat(3000));
        let lines = answer_lines(200, &body);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() < 16 * 1024), "under 16 KiB");
        let mut c = Collector::default();
        c.push("some other log line");
        for l in lines.iter().rev() {
            c.push(l);
        }
        assert_eq!(c.finish().unwrap(), (200, body));

        let mut c = Collector::default();
        c.push(&answer_lines(404, "")[0]);
        assert_eq!(c.finish().unwrap(), (404, String::new()));

        let mut c = Collector::default();
        c.push(&lines[0]);
        assert!(c.finish().unwrap_err().contains("incomplete"));
        assert!(Collector::default().finish().is_err());
    }
}
