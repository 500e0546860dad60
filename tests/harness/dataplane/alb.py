"""One HTTP or HTTPS listener of an application load balancer, as
lb_forward.py runs it (`lb_forward.py --http PORT CONFIG`): HTTP/1.1 with
keep-alive, TLS terminated with the listener's certificate, and each request
routed as Elastic Load Balancing routes it.

CONFIG is a JSON file the data plane rewrites whenever the listener, its
rules or its targets change; it is re-read (on a change of the file) before
each request, and its certificate files before each TLS handshake:

    {
      "protocol": "HTTPS",                  # or "HTTP"
      "port": 443,                          # the listener's port (X-Forwarded-Port)
      "ssl_policy": "ELBSecurityPolicy-…",  # HTTPS: TLS 1.3 only for a TLS13-1-3 policy, else TLS 1.2+
      "certificate": {"cert": "/…/cert.pem", "key": "/…/key.pem"},
                                            # HTTPS: the certificate and its chain, and the
                                            # unencrypted key; null: TLS connections are refused
      "rules": [{"priority": 10, "conditions": [...], "actions": [...]}],
                                            # DescribeRules' non-default rules, by priority,
                                            # Conditions and Actions as the API shapes them
      "default_actions": [...],             # the listener's DefaultActions
      "target_groups": {"<target group ARN>": [["10.89.1.5", 8080], ...]}
                                            # each forwarded-to group's targets (ip, port)
    }

Routing: the first rule (lowest priority number) whose conditions all match
(path-pattern, host-header, http-request-method, http-header, query-string,
source-ip; a condition matches when one of its values does; `*` matches any
characters, '/' included, `?` exactly one; paths case-sensitive and without
the query string) gives the actions, else the default actions. Of the actions
(by Order) the first `forward`, `fixed-response` or `redirect` one is done:

- forward: to a target of the action's target group (ForwardConfig: one
  picked by weight), round robin; 503 when the group has no targets, 502
  when the target refuses the connection or breaks it before its response,
  504 when it does not connect or answer within the idle timeout, as ALB
  does. The request body (Content-Length or chunked) is read in full first,
  then sent with a Content-Length; `Expect: 100-continue` is answered by the
  listener. The response streams back as it comes (Content-Length, chunked,
  or until the target closes, then chunked to the client). X-Forwarded-For,
  -Proto and -Port and X-Amzn-Trace-Id are added; hop-by-hop headers are not
  passed on. Connections to targets are kept alive and reused.
- fixed-response: the status code, content type and message body.
- redirect: Location built from RedirectConfig (#{protocol}, #{host},
  #{port}, #{path}, #{query}) with HTTP_301 or HTTP_302.
"""

from __future__ import annotations

import http
import ipaddress
import json
import os
import random
import re
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from email.utils import formatdate
from pathlib import Path

IDLE_TIMEOUT = 60.0  # ALB's default idle timeout
CONNECT_TIMEOUT = 10.0  # ALB's connection timeout to a target
HANDSHAKE_TIMEOUT = 10.0
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 256 * 1024 * 1024
SERVER = "awselb/2.0"
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "expect", "content-length",
}  # fmt: skip
NO_BODY_STATUSES = {204, 304}


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


class BadRequest(Exception):
    pass


# ----- matching


def wildcard(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    """ELB's wildcards: `*` any characters (none, '/' included), `?` exactly one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL | (0 if case_sensitive else re.IGNORECASE)) is not None


def _values(condition: dict, config_key: str) -> list:
    config = condition.get(config_key) or {}
    return list(condition.get("Values") or []) + list(config.get("Values") or [])


class Request:
    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]], peer: str):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.peer = peer
        path, _, query = target.partition("?")
        if "://" in path:  # absolute-form: the path of the URL (the target gets origin-form)
            parsed = urllib.parse.urlsplit(target)
            path, query = parsed.path or "/", parsed.query
            self.target = path + (f"?{query}" if query else "")
        self.path = path
        self.query = query

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def host(self) -> str:
        host = self.header("host") or ""
        if host.startswith("["):
            return host.partition("]")[0] + "]"
        return host.rsplit(":", 1)[0] if ":" in host else host

    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for v in self.header_all("connection") for t in v.split(",")}
        if self.version == "HTTP/1.1":
            return "close" not in tokens
        return "keep-alive" in tokens


def condition_matches(condition: dict, req: Request) -> bool:
    field = condition.get("Field")
    if field == "path-pattern":
        return any(wildcard(v, req.path) for v in _values(condition, "PathPatternConfig"))
    if field == "host-header":
        return any(wildcard(v, req.host(), False) for v in _values(condition, "HostHeaderConfig"))
    if field == "http-request-method":
        return req.method in _values(condition, "HttpRequestMethodConfig")
    if field == "http-header":
        config = condition.get("HttpHeaderConfig") or {}
        present = req.header_all(config.get("HttpHeaderName") or "")
        return any(wildcard(v, h, False) for v in config.get("Values") or [] for h in present)
    if field == "query-string":
        pairs = urllib.parse.parse_qsl(req.query, keep_blank_values=True)
        for kv in (condition.get("QueryStringConfig") or {}).get("Values") or []:
            key = kv.get("Key")
            for k, v in pairs:
                if (key is None or wildcard(key, k, False)) and wildcard(kv.get("Value", ""), v, False):
                    return True
        return False
    if field == "source-ip":
        try:
            ip = ipaddress.ip_address(req.peer)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(c, strict=False) for c in _values(condition, "SourceIpConfig"))
    return False  # a condition this listener does not know never matches


def route(config: dict, req: Request) -> dict | None:
    """The action the listener takes for `req`: that of the first matching
    rule by priority, else the default one."""
    actions = config.get("default_actions") or []
    for rule in sorted(config.get("rules") or [], key=lambda r: int(r.get("priority", 50000))):
        if all(condition_matches(c, req) for c in rule.get("conditions") or []):
            actions = rule.get("actions") or []
            break
    ordered = sorted(enumerate(actions), key=lambda ia: (ia[1].get("Order", ia[0] + 1), ia[0]))
    return next((a for _, a in ordered if a.get("Type") in ("forward", "fixed-response", "redirect")), None)


# ----- reading HTTP/1.1


def read_line(rfile, limit: int = MAX_HEADER_BYTES) -> bytes:
    line = rfile.readline(limit + 1)
    if len(line) > limit:
        raise BadRequest("line too long")
    return line


def read_headers(rfile) -> list[tuple[str, str]]:
    headers, total = [], 0
    while True:
        line = read_line(rfile)
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise BadRequest("headers too large")
        if not line:
            raise ConnectionError("connection closed in the headers")
        if line in (b"\r\n", b"\n"):
            return headers
        if line[:1] in (b" ", b"\t"):
            raise BadRequest("obsolete line folding")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"bad header line {line[:40]!r}")
        headers.append((name, value.strip()))


def body_framing(headers: list[tuple[str, str]]) -> tuple[str, int]:
    """("chunked", 0), ("length", n) or ("none", 0) for a request's body."""
    codings = [t.strip().lower() for k, v in headers if k.lower() == "transfer-encoding" for t in v.split(",")]
    codings = [c for c in codings if c]
    if codings:
        if codings[-1] != "chunked":
            raise BadRequest("unsupported transfer coding")
        return "chunked", 0
    lengths = {v.strip() for k, v in headers if k.lower() == "content-length"}
    if not lengths:
        return "none", 0
    if len(lengths) > 1 or not all(c.isdigit() for c in next(iter(lengths))):
        raise BadRequest("bad content-length")
    return "length", int(next(iter(lengths)))


def read_exact(rfile, n: int) -> bytes:
    data = rfile.read(n)
    if len(data) != n:
        raise ConnectionError("connection closed in the body")
    return data


def read_chunked(rfile, limit: int) -> bytes:
    parts, total = [], 0
    while True:
        line = read_line(rfile, 4096)
        if not line:
            raise ConnectionError("connection closed in a chunked body")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        if size == 0:
            read_headers(rfile)  # trailers, dropped
            return b"".join(parts)
        total += size
        if total > limit:
            raise BadRequest("body too large")
        parts.append(read_exact(rfile, size))
        if read_line(rfile, 2).strip():
            raise BadRequest("no CRLF after a chunk")


def status_line(code: int) -> bytes:
    try:
        reason = http.HTTPStatus(code).phrase
    except ValueError:
        reason = ""
    return f"HTTP/1.1 {code} {reason}\r\n".encode()


def head_bytes(first: bytes, headers: list[tuple[str, str]]) -> bytes:
    return first + "".join(f"{k}: {v}\r\n" for k, v in headers).encode("latin-1") + b"\r\n"


def error_body(code: int) -> bytes:
    title = f"{code} {http.HTTPStatus(code).phrase}"
    return f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n".encode()


class Upstream:
    """A kept-alive connection to one target."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.sock = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
        self.sock.settimeout(IDLE_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb", buffering=65536)
        self.reused = False

    def stale(self) -> bool:
        """An idle connection that became readable was closed by the target."""
        try:
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        for c in (self.rfile, self.sock):
            try:
                c.close()
            except OSError:
                pass


class UpstreamError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class HttpListener:
    def __init__(self, port: int, config_path: Path, host: str = "0.0.0.0"):
        self.port = port
        self.config_path = Path(config_path)
        self._config: dict = {}
        self._config_stamp: tuple | None = None
        self._tls: tuple[tuple, ssl.SSLContext | None] | None = None
        self.lock = threading.Lock()
        self.next: dict[str, int] = {}
        self.pool: dict[tuple[str, int], list[Upstream]] = {}
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(256)
        self.address = self.sock.getsockname()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"http {port}").start()

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # ----- configuration

    def config(self) -> dict:
        try:
            st = self.config_path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            return self._config
        with self.lock:
            if stamp != self._config_stamp:
                try:
                    self._config = json.loads(self.config_path.read_text())
                    self._config_stamp = stamp
                except (OSError, ValueError) as e:
                    log(f"listener {self.port}: cannot read {self.config_path}: {e}")
            return self._config

    def tls_context(self, config: dict) -> ssl.SSLContext | None:
        cert = config.get("certificate") or {}
        if not cert.get("cert") or not cert.get("key"):
            return None
        try:
            stamp = tuple(os.stat(cert[k]).st_mtime_ns for k in ("cert", "key"))
        except OSError:
            return None
        key = (cert["cert"], cert["key"], stamp, config.get("ssl_policy"))
        with self.lock:
            if self._tls is None or self._tls[0] != key:
                ctx: ssl.SSLContext | None = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                if "TLS13-1-3" in (config.get("ssl_policy") or ""):
                    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
                ctx.set_alpn_protocols(["http/1.1"])
                try:
                    ctx.load_cert_chain(cert["cert"], cert["key"])
                except (OSError, ssl.SSLError) as e:
                    log(f"listener {self.port}: cannot load the certificate: {e}")
                    ctx = None
                self._tls = (key, ctx)
            return self._tls[1]

    # ----- connections

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client, peer[0]), daemon=True).start()

    def _connection(self, conn: socket.socket, peer: str) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            config = self.config()
            tls = config.get("protocol") == "HTTPS"
            if tls:
                ctx = self.tls_context(config)
                if ctx is None:
                    return
                conn.settimeout(HANDSHAKE_TIMEOUT)
                try:
                    conn = ctx.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    return
            conn.settimeout(IDLE_TIMEOUT)
            rfile = conn.makefile("rb", buffering=65536)
            while self._exchange(conn, rfile, peer, tls):
                pass
        except (OSError, ConnectionError, BadRequest, ValueError):
            pass  # the client went, timed out or broke HTTP mid-body: the connection ends
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _exchange(self, conn: socket.socket, rfile, peer: str, tls: bool) -> bool:
        """Serves one request; whether the connection stays open."""
        try:
            line = read_line(rfile, 16 * 1024)
            while line in (b"\r\n", b"\n"):
                line = read_line(rfile, 16 * 1024)
            if not line:
                return False
            parts = line.decode("latin-1").rstrip("\r\n").split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                raise BadRequest("bad request line")
            headers = read_headers(rfile)
            req = Request(parts[0], parts[1], parts[2], headers, peer)
            framing, length = body_framing(headers)
        except BadRequest:
            self._respond(conn, 400, [("Content-Type", "text/html")], error_body(400), keep_alive=False)
            return False
        except socket.timeout:
            return False
        keep_alive = req.keep_alive()
        action = route(self.config(), req)
        has_body = framing == "chunked" or length > 0
        expects = (req.header("expect") or "").lower() == "100-continue" and has_body
        if action is None or action.get("Type") != "forward":
            if expects:
                # The client waits for 100 before its body: answer without it and close.
                keep_alive = False
            elif has_body:
                self._read_body(rfile, framing, length)
            return self._answer(conn, req, action, tls, keep_alive)
        if expects:
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = self._read_body(rfile, framing, length)
        except BadRequest:
            self._respond(conn, 400, [("Content-Type", "text/html")], error_body(400), keep_alive=False)
            return False
        return self._forward(conn, req, action, body if framing != "none" else None, tls, keep_alive)

    @staticmethod
    def _read_body(rfile, framing: str, length: int) -> bytes:
        if framing == "chunked":
            return read_chunked(rfile, MAX_BODY_BYTES)
        if framing == "length":
            if length > MAX_BODY_BYTES:
                raise BadRequest("body too large")
            return read_exact(rfile, length)
        return b""

    def _respond(
        self, conn, code: int, headers: list[tuple[str, str]], body: bytes, keep_alive: bool, head: bool = False
    ) -> bool:
        out = [("Server", SERVER), ("Date", formatdate(usegmt=True)), *headers,
               ("Content-Length", str(len(body))), ("Connection", "keep-alive" if keep_alive else "close")]  # fmt: skip
        conn.sendall(head_bytes(status_line(code), out) + (b"" if head else body))
        return keep_alive

    def _answer(self, conn, req: Request, action: dict | None, tls: bool, keep_alive: bool) -> bool:
        head = req.method == "HEAD"
        if action is None:
            return self._respond(conn, 503, [("Content-Type", "text/html")], error_body(503), keep_alive, head)
        if action["Type"] == "fixed-response":
            fixed = action.get("FixedResponseConfig") or {}
            body = (fixed.get("MessageBody") or "").encode()
            headers = [("Content-Type", fixed["ContentType"])] if fixed.get("ContentType") else []
            return self._respond(conn, int(fixed.get("StatusCode", 200)), headers, body, keep_alive, head)
        redirect = action.get("RedirectConfig") or {}
        protocol = "https" if tls else "http"
        host = req.host()
        values = {"protocol": protocol.upper(), "host": host, "port": str(self.port),
                  "path": req.path.lstrip("/"), "query": req.query}  # fmt: skip

        def fill(text: str) -> str:
            for k, v in values.items():
                text = text.replace("#{" + k + "}", v)
            return text

        scheme = fill(redirect.get("Protocol", "#{protocol}")).lower()
        port = fill(redirect.get("Port", "#{port}"))
        path = "/" + fill(redirect.get("Path", "/#{path}")).lstrip("/")
        query = fill(redirect.get("Query", "#{query}"))
        default = {"http": "80", "https": "443"}.get(scheme)
        location = f"{scheme}://{fill(redirect.get('Host', '#{host}'))}{'' if port == default else ':' + port}{path}"
        location += f"?{query}" if query else ""
        code = 301 if redirect.get("StatusCode") == "HTTP_301" else 302
        return self._respond(conn, code, [("Location", location)], b"", keep_alive, head)

    # ----- forwarding

    def _pick(self, action: dict) -> list[tuple[str, int]]:
        config = self.config()
        group = action.get("TargetGroupArn")
        choices = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
        if not group and choices:
            weights = [int(g.get("Weight", 1)) for g in choices]
            pick = random.choices(choices, weights) if sum(weights) > 0 else choices
            group = pick[0].get("TargetGroupArn")
        targets = [(ip, int(port)) for ip, port in (config.get("target_groups") or {}).get(group or "", [])]
        if not targets:
            return []
        with self.lock:
            n = self.next[group] = self.next.get(group, -1) + 1
        return [targets[n % len(targets)]]

    def _upstream(self, target: tuple[str, int], fresh: bool = False) -> Upstream:
        if not fresh:
            while True:
                with self.lock:
                    idle = self.pool.get(target) or []
                    up = idle.pop() if idle else None
                if up is None:
                    break
                if up.stale():
                    up.close()
                    continue
                up.reused = True
                return up
        try:
            return Upstream(target)
        except socket.timeout:
            raise UpstreamError(504, "connect timed out") from None
        except OSError as e:
            raise UpstreamError(502, f"connect: {e}") from None

    def _release(self, up: Upstream) -> None:
        with self.lock:
            idle = self.pool.setdefault(up.target, [])
            if len(idle) < 32:
                idle.append(up)
                return
        up.close()

    def _forward(
        self, conn, req: Request, action: dict, body: bytes | None, tls: bool, keep_alive: bool
    ) -> bool:
        head = req.method == "HEAD"
        picked = self._pick(action)
        if not picked:
            return self._respond(conn, 503, [("Content-Type", "text/html")], error_body(503), keep_alive, head)
        target = picked[0]
        request = self._upstream_request(req, body, tls)
        try:
            up, status, version, headers = self._send(target, request)
        except UpstreamError as e:
            log(f"listener {self.port}: {req.method} {req.path} -> {target[0]}:{target[1]}: {e} ({e.status})")
            return self._respond(conn, e.status, [("Content-Type", "text/html")], error_body(e.status), keep_alive, head)
        # 1xx answers before the final one go to the client as they are.
        while 100 <= status < 200 and status != 101:
            if req.version == "HTTP/1.1":
                conn.sendall(head_bytes(status_line(status), headers))
            try:
                status, version, headers = self._read_response_head(up)
            except (OSError, ConnectionError, BadRequest, ValueError):
                up.close()
                return self._respond(conn, 502, [("Content-Type", "text/html")], error_body(502), keep_alive, head)
        return self._relay(conn, req, up, status, version, headers, keep_alive)

    def _upstream_request(self, req: Request, body: bytes | None, tls: bool) -> bytes:
        connection_tokens = {t.strip().lower() for v in req.header_all("connection") for t in v.split(",")}
        headers = [(k, v) for k, v in req.headers if k.lower() not in HOP_BY_HOP | connection_tokens]
        forwarded_for = req.header("x-forwarded-for")
        headers = [(k, v) for k, v in headers if k.lower() not in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-port")]
        headers += [
            ("X-Forwarded-For", f"{forwarded_for}, {req.peer}" if forwarded_for else req.peer),
            ("X-Forwarded-Proto", "https" if tls else "http"),
            ("X-Forwarded-Port", str(self.port)),
        ]
        if req.header("x-amzn-trace-id") is None:
            headers.append(("X-Amzn-Trace-Id", f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}"))
        if body is not None:
            headers.append(("Content-Length", str(len(body))))
        first = f"{req.method} {req.target} HTTP/1.1\r\n".encode("latin-1")
        return head_bytes(first, headers) + (body or b"")

    def _send(self, target: tuple[str, int], request: bytes) -> tuple[Upstream, int, str, list]:
        """Sends the request; on a reused connection the target closed
        meanwhile, once more on a new one."""
        fresh = False
        while True:
            up = self._upstream(target, fresh)
            try:
                up.sock.sendall(request)
                status, version, headers = self._read_response_head(up)
                return up, status, version, headers
            except socket.timeout:
                up.close()
                raise UpstreamError(504, "no response within the idle timeout") from None
            except (OSError, ConnectionError, BadRequest, ValueError) as e:
                up.close()
                if up.reused and not fresh:
                    fresh = True
                    continue
                raise UpstreamError(502, f"{type(e).__name__}: {e}") from None

    @staticmethod
    def _read_response_head(up: Upstream) -> tuple[int, str, list[tuple[str, str]]]:
        line = read_line(up.rfile, 16 * 1024)
        if not line:
            raise ConnectionError("the target closed the connection")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise BadRequest(f"bad status line {line[:40]!r}")
        headers = read_headers(up.rfile)
        # A target that writes its head and body apart (Nagle) would wait for
        # a delayed ACK of the head on a reused connection: ACK it now.
        up.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return int(parts[1]), parts[0], headers

    def _relay(self, conn, req: Request, up: Upstream, status: int, version: str, headers, keep_alive: bool) -> bool:
        lower = [(k.lower(), v) for k, v in headers]
        tokens = {t.strip().lower() for k, v in lower if k == "connection" for t in v.split(",")}
        up_keep = ("close" not in tokens) if version == "HTTP/1.1" else ("keep-alive" in tokens)
        codings = [t.strip().lower() for k, v in lower if k == "transfer-encoding" for t in v.split(",") if t.strip()]
        lengths = {v.strip() for k, v in lower if k == "content-length"}
        if req.method == "HEAD" or status in NO_BODY_STATUSES:
            framing = "none"
        elif codings and codings[-1] == "chunked":
            framing = "chunked"
        elif codings:
            framing, up_keep = "close", False
        elif len(lengths) == 1 and next(iter(lengths)).isdigit():
            framing = "length"
        elif lengths:
            up.close()
            return self._respond(conn, 502, [("Content-Type", "text/html")], error_body(502), keep_alive)
        else:
            framing, up_keep = "close", False
        client_11 = req.version == "HTTP/1.1"
        out = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP | tokens or k.lower() == "content-length"]
        if framing == "length" or (framing == "none" and req.method == "HEAD"):
            pass  # Content-Length as the target sent it
        else:
            out = [(k, v) for k, v in out if k.lower() != "content-length"]
        # What the client gets: chunked as it came, or a close-delimited body
        # chunked for an HTTP/1.1 client; an HTTP/1.0 one reads until close.
        chunk_out = framing in ("chunked", "close") and client_11
        if framing in ("chunked", "close") and not client_11:
            keep_alive = False
        if chunk_out:
            out.append(("Transfer-Encoding", "chunked"))
        out.append(("Connection", "keep-alive" if keep_alive else "close"))
        conn.sendall(head_bytes(status_line(status), out))
        complete = False
        try:
            if framing == "length":
                remaining = int(next(iter(lengths)))
                while remaining:
                    data = up.rfile.read1(min(remaining, 65536))
                    if not data:
                        raise ConnectionError("the target closed the connection in its body")
                    conn.sendall(data)
                    remaining -= len(data)
            elif framing == "chunked":
                self._relay_chunked(up, conn, raw=client_11)
            elif framing == "close":
                while data := up.rfile.read1(65536):
                    conn.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunk_out else data)
                if chunk_out:
                    conn.sendall(b"0\r\n\r\n")
            complete = True
        except (OSError, ConnectionError, BadRequest, ValueError):
            # The response is cut: so is the client's connection, as ALB does.
            keep_alive = False
        finally:
            if complete and up_keep:
                self._release(up)
            else:
                up.close()
        return keep_alive

    @staticmethod
    def _relay_chunked(up: Upstream, conn, raw: bool) -> None:
        while True:
            line = read_line(up.rfile, 4096)
            if not line:
                raise ConnectionError("the target closed the connection in a chunked body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                trailer = b""
                while (t := read_line(up.rfile)) not in (b"\r\n", b"\n"):
                    if not t:
                        raise ConnectionError("the target closed the connection in its trailers")
                    trailer += t
                if raw:
                    conn.sendall(line + trailer + b"\r\n")
                return
            data = read_exact(up.rfile, size)
            read_line(up.rfile, 2)
            conn.sendall(line + data + b"\r\n" if raw else data)
