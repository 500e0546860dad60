#!/usr/bin/env python3
"""A tiny step service for the examples: the `http` driver POSTs a run's
context here and the JSON answer becomes the step's output.

    python3 examples/step-service/step_service.py            # 127.0.0.1:8300
    STEP_SERVICE_PORT=9000 python3 examples/step-service/step_service.py

Any path answers 200 with a small JSON output that echoes what it was asked,
except `/fail`, which answers 500 (retried by the engine) and `/reject`,
which answers 400 (fails the step at once). Standard library only.
"""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StepHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        try:
            context = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return self._answer(400, {"error": "the body is not JSON"})
        if self.path == "/fail":
            return self._answer(500, {"error": "asked to fail"})
        if self.path == "/reject":
            return self._answer(400, {"error": "asked to reject"})
        event = context.get("event") or {}
        self._answer(200, {
            "step": context.get("step_id"),
            "path": self.path,
            "event": event.get("name"),
            "data": event.get("data"),
            "previous": sorted((context.get("steps") or {}).keys()),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })

    def _answer(self, status, body):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, fmt, *args):
        sys.stderr.write("step-service: " + (fmt % args) + "\n")


def main():
    port = int(os.environ.get("STEP_SERVICE_PORT", "8300"))
    server = ThreadingHTTPServer(("127.0.0.1", port), StepHandler)
    print(f"step service on http://127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
