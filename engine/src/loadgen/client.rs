//! The hot path: one raw HTTP/1.1 keep-alive connection per worker, written
//! by hand on the `TcpStream` (no client library, no dispatch channel, no
//! header map): the request head is rendered once per run, each request is
//! one `write` of head + body from a reused buffer, and the answer is parsed
//! in place with `httparse` from a reused read buffer. Bodies are framed by
//! `Content-Length`, `Transfer-Encoding: chunked` or the end of the
//! connection; `Connection: close` and HTTP/1.0 answers retire the
//! connection. So the generator costs the machine about what wrk does.
//! `https://` URLs go through rustls (TLS 1.2/1.3, HTTP/1.1 by ALPN),
//! trusting the system's roots (or `SSL_CERT_FILE` / `SSL_CERT_DIR`), else
//! the Mozilla roots; the handshake is made when the connection opens,
//! before the clock starts.

use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::http::Uri;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::LoadError;

/// Where requests go: an `http://` or `https://` URL resolved once.
#[derive(Clone)]
pub struct Endpoint {
    /// The resolved address.
    pub addr: SocketAddr,
    /// For `https://`: the TLS client and the name the certificate must have.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The request head up to the `Content-Length` value:
    /// `POST {path} HTTP/1.1\r\nHost: ..\r\nContent-Type: application/json\r\nContent-Length: `.
    head: Vec<u8>,
    /// The URL with the event key masked, for reports.
    pub display: String,
}

impl Endpoint {
    /// Parses and resolves `url` (`http://host[:port]/path`); with
    /// `connect_to` (`HOST[:PORT]`), connects there instead while the
    /// request and TLS name the URL's host.
    pub async fn resolve(url: &str, connect_to: Option<&str>) -> Result<Self, LoadError> {
        let bad = |message: String| LoadError::Option {
            option: "--url",
            message,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| bad(format!("`{url}` is not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad(format!("`{url}` must start with http:// or https://"))),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| bad(format!("`{url}` has no host")))?
            .clone();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let name = ServerName::try_from(authority.host().to_string()).map_err(|e| {
                bad(format!(
                    "`{}` is not a TLS server name: {e}",
                    authority.host()
                ))
            })?;
            Some((TlsConnector::from(tls_config().map_err(bad)?), name))
        } else {
            None
        };
        let (host, port) = match connect_to {
            None => (authority.host(), port),
            Some(target) => match target.rsplit_once(':') {
                Some((h, p)) => (
                    h,
                    p.parse().map_err(|e| LoadError::Option {
                        option: "--connect-to",
                        message: format!("`{target}`: {e}"),
                    })?,
                ),
                None => (target, port),
            },
        };
        let addr = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| bad(format!("cannot resolve `{host}`")))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        // `Uri` parsing already refused spaces and control characters, so
        // path and authority go into the head verbatim.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: ",
            authority.as_str()
        )
        .into_bytes();
        Ok(Self {
            addr,
            tls,
            head,
            display: mask_key(url),
        })
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

/// The TLS client settings: the system's roots (which honour
/// `SSL_CERT_FILE` and `SSL_CERT_DIR`), or the Mozilla roots when the
/// system has none (a minimal container image).
pub fn tls_config() -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection's byte stream: plain TCP or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
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
    /// The TLS handshake failed (e.g. a certificate not trusted here).
    Tls(String),
    /// No answer within the timeout.
    Timeout,
    /// Reading or writing the connection failed.
    Io(std::io::Error),
    /// The answer is not valid HTTP/1.1.
    Protocol(String),
    /// The server closed the connection before the answer was complete.
    Closed,
}

impl Failure {
    /// A short key for the error counts.
    pub fn key(&self) -> String {
        match self {
            Failure::Connect(e) => format!("connect: {}", e.kind()),
            Failure::Tls(m) => format!("tls: {m}"),
            Failure::Timeout => "timeout".into(),
            Failure::Io(e) => format!("http: {}", e.kind()),
            Failure::Protocol(m) => format!("http: invalid answer: {m}"),
            Failure::Closed => "http: connection closed early".into(),
        }
    }
}

/// A connection idle longer than this is checked for a close by the peer
/// before it carries a request; a busy one (maximum throughput) is not,
/// which saves a syscall per request.
const IDLE_CHECK: Duration = Duration::from_millis(5);
/// The most header lines an answer may have.
const MAX_HEADERS: usize = 64;
/// Read buffer to start with; it grows for larger answers.
const READ_BUF: usize = 8 * 1024;

/// One keep-alive connection with its reused buffers and timer.
pub struct Conn {
    stream: Stream,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// Unconsumed bytes are `rbuf[rstart..rend]`.
    rstart: usize,
    rend: usize,
    /// The peer closed it, said `Connection: close`, or an exchange failed.
    closed: bool,
    last_used: Instant,
    /// The per-request timeout, reset for each request instead of a new timer each time.
    timer: Pin<Box<Sleep>>,
}

/// How the body of an answer is delimited.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl Conn {
    /// Opens a connection to `ep`.
    pub async fn open(ep: &Endpoint) -> Result<Self, Failure> {
        let tcp = TcpStream::connect(ep.addr)
            .await
            .map_err(Failure::Connect)?;
        tcp.set_nodelay(true).map_err(Failure::Connect)?;
        let stream = match &ep.tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => Stream::Tls(Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| Failure::Tls(e.to_string()))?,
            )),
        };
        Ok(Self {
            stream,
            wbuf: Vec::with_capacity(ep.head.len() + 512),
            rbuf: vec![0; READ_BUF],
            rstart: 0,
            rend: 0,
            closed: false,
            last_used: Instant::now(),
            timer: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
        })
    }

    /// Whether the connection can carry another request at `now`: false
    /// once it was retired or the peer closed it while idle (so a
    /// keep-alive connection the server dropped between requests is
    /// replaced, not counted as a failure).
    pub fn is_open(&mut self, now: Instant) -> bool {
        if self.closed {
            return false;
        }
        if now.saturating_duration_since(self.last_used) >= IDLE_CHECK {
            // A peek, so TLS records (a session ticket) stay for rustls to read.
            let mut probe = [0u8; 1];
            let mut buf = ReadBuf::new(&mut probe);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match self.stream.tcp().poll_peek(&mut cx, &mut buf) {
                Poll::Pending => {}
                // Bytes nobody asked for on a plain connection: not reusable.
                Poll::Ready(Ok(n)) if n > 0 && matches!(self.stream, Stream::Tls(_)) => {}
                // EOF or an error: not reusable.
                Poll::Ready(_) => self.closed = true,
            }
        }
        !self.closed
    }

    /// POSTs `body` as JSON and reads the whole answer: its status, and its
    /// body when `keep_body` (otherwise an empty `Bytes`, so the hot path
    /// allocates nothing).
    pub async fn post(
        &mut self,
        ep: &Endpoint,
        body: &[u8],
        timeout: Duration,
        keep_body: bool,
    ) -> Result<(u16, Bytes), Failure> {
        self.wbuf.clear();
        self.wbuf.extend_from_slice(&ep.head);
        // Writing to a Vec cannot fail.
        let _ = write!(self.wbuf, "{}\r\n\r\n", body.len());
        self.wbuf.extend_from_slice(body);
        let deadline = tokio::time::Instant::now() + timeout;
        self.timer.as_mut().reset(deadline);
        let result = {
            let Self {
                stream,
                wbuf,
                rbuf,
                rstart,
                rend,
                closed,
                timer,
                ..
            } = self;
            let exchange = async {
                stream.write_all(wbuf).await.map_err(Failure::Io)?;
                let mut reader = Reader {
                    stream,
                    buf: rbuf,
                    start: rstart,
                    end: rend,
                };
                reader.answer(keep_body, closed).await
            };
            tokio::select! {
                biased;
                r = exchange => r,
                () = timer.as_mut() => Err(Failure::Timeout),
            }
        };
        self.last_used = Instant::now();
        if result.is_err() {
            self.closed = true;
        }
        result
    }
}

/// The read side of one exchange, over the connection's buffer.
struct Reader<'a> {
    stream: &'a mut Stream,
    buf: &'a mut Vec<u8>,
    start: &'a mut usize,
    end: &'a mut usize,
}

impl Reader<'_> {
    /// Reads more bytes into the buffer (moving unread bytes to the front,
    /// growing it when full); `Ok(0)` at the end of the stream.
    async fn fill(&mut self) -> Result<usize, Failure> {
        if *self.start > 0 {
            self.buf.copy_within(*self.start..*self.end, 0);
            *self.end -= *self.start;
            *self.start = 0;
        }
        if *self.end == self.buf.len() {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
        self.stream
            .read(&mut self.buf[*self.end..])
            .await
            .inspect(|n| *self.end += n)
            .map_err(Failure::Io)
    }

    fn unread(&self) -> &[u8] {
        &self.buf[*self.start..*self.end]
    }

    /// Reads one answer: skips `1xx` interim answers, then reads the body
    /// as the head frames it. Sets `closed` when the connection cannot be reused.
    async fn answer(
        &mut self,
        keep_body: bool,
        closed: &mut bool,
    ) -> Result<(u16, Bytes), Failure> {
        loop {
            let (status, framing, close, head_len) = loop {
                match parse_head(self.unread())? {
                    Some(h) => break h,
                    None => {
                        if self.fill().await? == 0 {
                            return Err(Failure::Closed);
                        }
                    }
                }
            };
            *self.start += head_len;
            if (100..200).contains(&status) {
                continue;
            }
            // 204 and 304 never carry a body, whatever the headers say.
            let framing = if status == 204 || status == 304 {
                Framing::Length(0)
            } else {
                framing
            };
            let body = match framing {
                Framing::Length(n) => self.fixed(n, keep_body).await?,
                Framing::Chunked => self.chunked(keep_body).await?,
                Framing::UntilClose => {
                    *closed = true;
                    self.until_close(keep_body).await?
                }
            };
            if close {
                *closed = true;
            }
            return Ok((status, body));
        }
    }

    async fn fixed(&mut self, n: usize, keep: bool) -> Result<Bytes, Failure> {
        while self.unread().len() < n {
            if self.fill().await? == 0 {
                return Err(Failure::Closed);
            }
        }
        let body = if keep {
            Bytes::copy_from_slice(&self.unread()[..n])
        } else {
            Bytes::new()
        };
        *self.start += n;
        Ok(body)
    }

    async fn chunked(&mut self, keep: bool) -> Result<Bytes, Failure> {
        let mut body = Vec::new();
        loop {
            let (skip, size) = loop {
                match httparse::parse_chunk_size(self.unread()) {
                    Ok(httparse::Status::Complete((skip, size))) => break (skip, size),
                    Ok(httparse::Status::Partial) => {
                        if self.fill().await? == 0 {
                            return Err(Failure::Closed);
                        }
                    }
                    Err(_) => return Err(Failure::Protocol("bad chunk size".into())),
                }
            };
            *self.start += skip;
            let size =
                usize::try_from(size).map_err(|_| Failure::Protocol("chunk too large".into()))?;
            if size == 0 {
                // Trailer lines, then an empty line.
                loop {
                    let line = loop {
                        if let Some(i) = self.unread().windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        if self.fill().await? == 0 {
                            return Err(Failure::Closed);
                        }
                    };
                    *self.start += line + 2;
                    if line == 0 {
                        return Ok(Bytes::from(body));
                    }
                }
            }
            while self.unread().len() < size + 2 {
                if self.fill().await? == 0 {
                    return Err(Failure::Closed);
                }
            }
            if keep {
                body.extend_from_slice(&self.unread()[..size]);
            }
            if &self.unread()[size..size + 2] != b"\r\n" {
                return Err(Failure::Protocol("chunk without CRLF".into()));
            }
            *self.start += size + 2;
        }
    }

    async fn until_close(&mut self, keep: bool) -> Result<Bytes, Failure> {
        while self.fill().await? > 0 {}
        let body = if keep {
            Bytes::copy_from_slice(self.unread())
        } else {
            Bytes::new()
        };
        *self.start = *self.end;
        Ok(body)
    }
}

/// Parses an answer head: status, body framing, whether the connection
/// closes after it, and the head's length; `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, Framing, bool, usize)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Failure::Protocol(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    // HTTP/1.0 closes unless it asks to keep alive; 1.1 keeps alive unless it asks to close.
    let mut close = resp.version == Some(0);
    let mut framing = Framing::UntilClose;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            if !matches!(framing, Framing::Chunked) {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| Failure::Protocol("bad Content-Length".into()))?;
                framing = Framing::Length(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked wins over Content-Length (RFC 9112 6.3).
            if h.value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"chunked"))
            {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    close = false;
                }
            }
        }
    }
    Ok(Some((status, framing, close, len)))
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

    #[test]
    fn heads_give_status_framing_and_close() {
        let (s, f, c, n) =
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{\"ids\":[]}..")
                .unwrap()
                .unwrap();
        assert_eq!((s, c, n), (200, false, 39));
        assert!(matches!(f, Framing::Length(12)));
        let (s, f, c, _) = parse_head(
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!((s, c), (503, true));
        assert!(matches!(f, Framing::Chunked));
        let (_, f, c, _) = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert!(c);
        assert!(matches!(f, Framing::UntilClose));
        let (_, _, c, _) =
            parse_head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(!c);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Le")
                .unwrap()
                .is_none()
        );
        assert!(parse_head(b"SMTP ready\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }
}
