"""Sends one batch of events with Inngest's Python SDK (PyPI `inngest`) to a
stackctl event API through a loopback proxy that loses the first answer, so
that the SDK itself retries the send, as it does when a response never
arrives (`Inngest.send_sync`: the request, with its `x-inngest-event-id-seed`
header, is built once and sent again on a transport error or a 5xx).

The proxy forwards every POST to the event API. The first one's answer is
read from the event API (the events are accepted) and then dropped: the
proxy closes the client's connection without a response, which httpx
reports as a `RemoteProtocolError`, a transport error the SDK retries.
Later requests are answered with the event API's answer.

    python inngest_send_retry.py EVENT_API_URL EVENT_KEY

Prints one JSON object: `ids` (what `send_sync` returned) and `attempts`
(each request the proxy forwarded: its seed header, body, and the event
API's status and answer).
"""

import http.server
import json
import sys
import threading
import urllib.error
import urllib.request

import inngest

SEED_HEADER = "x-inngest-event-id-seed"


def main() -> None:
    upstream, event_key = sys.argv[1], sys.argv[2]
    attempts: list[dict] = []
    lock = threading.Lock()

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("host", "content-length", "connection")
            }
            req = urllib.request.Request(
                upstream + self.path, data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    status, answer = resp.status, resp.read()
            except urllib.error.HTTPError as err:
                status, answer = err.code, err.read()
            with lock:
                attempts.append(
                    {
                        "seed": self.headers.get(SEED_HEADER),
                        "body": json.loads(body),
                        "status": status,
                        "answer": json.loads(answer),
                    }
                )
                first = len(attempts) == 1
            if first:
                # The event API accepted the events; the client never hears so.
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            sys.stderr.write("proxy: " + (format % args) + "\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy_url = f"http://127.0.0.1:{server.server_address[1]}"

    client = inngest.Inngest(
        app_id="stackctl-seed-test",
        event_key=event_key,
        event_api_base_url=proxy_url,
        is_production=True,
    )
    ids = client.send_sync(
        [
            inngest.Event(name="seed/order", data={"n": 1}),
            inngest.Event(name="seed/order", data={"n": 2}),
            inngest.Event(name="seed/order", data={"n": 3}, id="py-order-3"),
        ]
    )
    server.shutdown()
    print(json.dumps({"ids": ids, "attempts": attempts}))


if __name__ == "__main__":
    main()
