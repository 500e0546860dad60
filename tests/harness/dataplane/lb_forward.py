"""One load balancer listener of the emulated VPC: accepts on 0.0.0.0:PORT in
the network namespace it is started in (the data plane starts it in its
router container's, whose address the VPC's names of the load balancer
resolve to).

    python lb_forward.py PORT TARGETS_FILE
        A network load balancer's (TCP) listener: forwards each connection
        to one of the targets listed in TARGETS_FILE, a JSON list of
        [ip, port] the data plane rewrites every round with the running
        tasks of the target group's services.

    python lb_forward.py --http PORT CONFIG_FILE
        An application load balancer's HTTP or HTTPS listener (alb.py):
        terminates TLS with the listener's certificate, evaluates the
        listener's rules for each request and forwards it to a target of the
        chosen target group or answers it (fixed response, redirect). CONFIG_FILE
        (its format is in alb.py) carries the listener's protocol,
        certificate files, rules, default actions and each target group's
        targets; the data plane rewrites it when any of them changes, and
        the listener re-reads it.
"""

import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    args = sys.argv[1:]
    http = args[:1] == ["--http"]
    port, path = int(args[-2]), Path(args[-1])
    if http:
        from alb import HttpListener  # noqa: PLC0415 - only this mode needs it

        HttpListener(port, path)
    else:
        from dataplane import Forwarder  # noqa: PLC0415 - after the path is set

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
