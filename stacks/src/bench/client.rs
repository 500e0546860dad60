//! The hot path: one raw HTTP/1.1 keep-alive connection per worker
//! (`hyper::client::conn::http1`, no pool, no redirects, no per-request
//! allocation beyond the body), so the generator costs the machine as little
//! as wrk does.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::http::{HeaderValue, Method, Request, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::BenchError;

/// Where requests go: an `http://` URL resolved once.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The resolved address.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: HeaderValue,
    /// Path and query.
    pub path: Uri,
    /// The URL with the event key masked, for reports.
    pub display: String,
}

impl Endpoint {
    /// Parses and resolves `url` (`http://host[:port]/path`).
    pub async fn resolve(url: &str) -> Result<Self, BenchError> {
        let bad = |message: String| BenchError::Option {
            option: "--url",
            message,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| bad(format!("`{url}` is not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(format!(
                    "`{url}`: https is not supported by the load generator yet; use the http endpoint"
                )));
            }
            _ => return Err(bad(format!("`{url}` must start with http://"))),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad(format!("`{url}` has no host")))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| bad(format!("cannot resolve `{}`", authority.host())))?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| bad(format!("`{url}`: {e}")))?;
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|e| bad(format!("`{url}`: {e}")))?;
        Ok(Self {
            addr,
            host,
            display: mask_key(url),
            path,
        })
    }
}

/// `http://h/e/SECRET` → `http://h/e/***`: reports and logs never show the key.
pub fn mask_key(url: &str) -> String {
    match url.find("/e/") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            format!("{}/e/***{}", &url[..i], &rest[end..])
        }
        None => url.to_string(),
    }
}

/// Why a request got no HTTP answer.
#[derive(Debug)]
pub enum Failure {
    /// The connection could not be made.
    Connect(std::io::Error),
    /// No answer within the timeout.
    Timeout,
    /// The connection broke.
    Http(hyper::Error),
    /// The server closed the connection before answering.
    Closed,
}

impl Failure {
    /// A short key for the error counts.
    pub fn key(&self) -> String {
        match self {
            Failure::Connect(e) => format!("connect: {}", e.kind()),
            Failure::Timeout => "timeout".into(),
            Failure::Http(e) if e.is_incomplete_message() => "http: connection closed early".into(),
            Failure::Http(e) => format!("http: {e}"),
            Failure::Closed => "http: connection closed early".into(),
        }
    }
}

/// One keep-alive connection, driven by the task that sends on it: the
/// connection future is polled alongside each exchange instead of in a task
/// of its own, which saves two cross-task wake-ups per request.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    conn: Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>,
    closed: bool,
}

impl Conn {
    /// Opens a connection to `ep`.
    pub async fn open(ep: &Endpoint) -> Result<Self, Failure> {
        let stream = TcpStream::connect(ep.addr)
            .await
            .map_err(Failure::Connect)?;
        stream.set_nodelay(true).map_err(Failure::Connect)?;
        // One flattened write per request: cheaper than writev of head and body.
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(Failure::Http)?;
        Ok(Self {
            sender,
            conn: Box::pin(conn),
            closed: false,
        })
    }

    /// Whether the connection can carry another request: false once the
    /// peer closed it (polled without waiting, so a keep-alive connection
    /// the server dropped between requests is replaced, not counted as a failure).
    pub async fn is_open(&mut self) -> bool {
        if self.closed {
            return false;
        }
        let conn = &mut self.conn;
        let done = std::future::poll_fn(|cx| Poll::Ready(conn.as_mut().poll(cx).is_ready())).await;
        if done {
            self.closed = true;
        }
        !self.closed && !self.sender.is_closed()
    }

    /// POSTs `body` as JSON and reads the whole answer.
    pub async fn post(
        &mut self,
        ep: &Endpoint,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), Failure> {
        let Self {
            sender,
            conn,
            closed,
        } = self;
        let exchange = async {
            sender.ready().await.map_err(Failure::Http)?;
            let mut req = Request::new(Full::new(Bytes::from(body)));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = ep.path.clone();
            let h = req.headers_mut();
            h.insert(header::HOST, ep.host.clone());
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let resp = sender.send_request(req).await.map_err(Failure::Http)?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(Failure::Http)?
                .to_bytes();
            Ok((status, bytes))
        };
        let driven = async {
            tokio::select! {
                biased;
                r = exchange => r,
                end = conn.as_mut() => {
                    *closed = true;
                    Err(match end {
                        Err(e) => Failure::Http(e),
                        Ok(()) => Failure::Closed,
                    })
                }
            }
        };
        match tokio::time::timeout(timeout, driven).await {
            Ok(r) => r,
            Err(_) => {
                self.closed = true;
                Err(Failure::Timeout)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked() {
        assert_eq!(mask_key("http://h:1/e/secret"), "http://h:1/e/***");
        assert_eq!(mask_key("http://h/e/secret?x=1"), "http://h/e/***?x=1");
        assert_eq!(mask_key("http://h/ingest"), "http://h/ingest");
    }
}
