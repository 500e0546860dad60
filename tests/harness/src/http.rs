//! A minimal blocking HTTP/1.1 client over TCP or a unix socket: enough to probe
//! readiness and drive the few admin calls tests need (moto's reset, Docker API
//! calls to podman) without pulling an HTTP stack into every test binary.
//!
//! Every request is sent with `Connection: close` and the response is read to
//! EOF, so no connection reuse or pipelining is handled; chunked bodies are.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Long enough for a container wait or a moto call under a loaded 2-core CI box.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port`, e.g. `127.0.0.1:5000`.
    Tcp(String),
    /// A unix socket path (the Docker API of podman).
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "http://{addr}"),
            Target::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The response if its status is 2xx, else an error naming `what`.
    pub fn success(self, what: impl Into<String>) -> Result<Self> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(Error::Status {
                what: what.into(),
                status: self.status,
                body: self.text(),
            })
        }
    }
}

pub fn get(target: &Target, path: &str) -> Result<Response> {
    request(target, "GET", path, None)
}

pub fn post_json(target: &Target, path: &str, json: &str) -> Result<Response> {
    request(
        target,
        "POST",
        path,
        Some(("application/json", json.as_bytes())),
    )
}

/// Sends one request and reads the whole response.
pub fn request(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> Result<Response> {
    request_with(target, method, path, &[], body)
}

/// [`request`] with extra header lines (name, value).
pub fn request_with(
    target: &Target,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Result<Response> {
    let fail = |detail: String| Error::Http {
        method: method.to_owned(),
        target: target.to_string(),
        path: path.to_owned(),
        detail,
    };
    let host = match target {
        Target::Tcp(addr) => addr.as_str(),
        // Docker clients send a placeholder host over unix sockets too.
        Target::Unix(_) => "localhost",
    };
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: */*\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some((content_type, bytes)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    } else if method != "GET" && method != "HEAD" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    if let Some((_, bytes)) = body {
        request.extend_from_slice(bytes);
    }

    let raw = match target {
        Target::Tcp(addr) => {
            let stream = TcpStream::connect(addr).map_err(|e| fail(format!("connect: {e}")))?;
            exchange(stream, &request, |s| {
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))
            })
        }
        Target::Unix(path) => {
            let stream = UnixStream::connect(path).map_err(|e| fail(format!("connect: {e}")))?;
            exchange(stream, &request, |s| {
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))
            })
        }
    }
    .map_err(|e| fail(e.to_string()))?;
    parse_response(&raw).map_err(fail)
}

fn exchange<S: Read + Write>(
    mut stream: S,
    request: &[u8],
    configure: impl FnOnce(&S) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    configure(&stream)?;
    stream.write_all(request)?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(raw)
}

fn parse_response(raw: &[u8]) -> std::result::Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete response ({} bytes)", raw.len()))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|e| format!("header: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|e| e.to_string())?;
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|e| format!("bad chunk size {size_hex:?}: {e}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let plain = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((plain.status, plain.text()), (200, "ok".to_owned()));

        let chunked = parse_response(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.status, 201);
        assert_eq!(chunked.text(), "abcde");
        assert_eq!(chunked.header("Transfer-Encoding"), Some("chunked"));
    }

    #[test]
    fn rejects_a_truncated_response() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-").is_err());
    }
}
