"""One load balancer listener of the emulated VPC: accepts on 0.0.0.0:PORT in
the network namespace it is started in (the data plane starts it in its
router container's, whose address the VPC's names of the load balancer
resolve to) and forwards each connection to one of the targets listed in
TARGETS_FILE, a JSON list of [ip, port] the data plane rewrites every round
with the running tasks of the target group's services.

    python lb_forward.py PORT TARGETS_FILE
"""

import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dataplane import Forwarder  # noqa: E402 - after the path is set


def main() -> int:
    port, path = int(sys.argv[1]), Path(sys.argv[2])

    def targets() -> list[tuple[str, int]]:
        try:
            return [(ip, int(p)) for ip, p in json.loads(path.read_text())]
        except (OSError, ValueError):
            return []

    Forwarder(("0.0.0.0", port), targets, f"lb {port}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
