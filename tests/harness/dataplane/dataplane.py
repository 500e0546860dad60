"""The AWS data plane for tests: runs, as real podman containers, what moto's
control plane says should run.

moto records ECS services, task definitions, Auto Scaling groups,
ElastiCache replication groups and MemoryDB clusters but runs none of them.
This process watches moto through the AWS APIs (boto3, the way an ECS agent
or EC2 would learn their work) and converges this machine to it:

- ECS services: `desiredCount` containers of the service's current task
  definition, image pulled from the docker-registry that ECR URIs map onto,
  environment and `secrets` (resolved from SSM as the ECS agent does). Every
  container of the task definition runs: the others share the first one's
  network namespace (awsvpc: one address per task, `localhost` between its
  containers) and start right after it; the task is the first container's
  (its health, exit and replacement). A new
  task definition rolls the containers (new ones healthy first, then the old
  ones stopped); a container that exits is replaced; a deleted service loses
  its containers. Cloud Map names resolve to the service's containers
  inside the network; a task runs its container health check (podman exec)
  once its port answers.
- Elastic Load Balancing: each listener is a process (lb_forward.py) in
  the router container's network namespace on the listener's port; the load
  balancer's DNS name resolves to the router's address. A network load
  balancer's (TCP) listener forwards connections to the running tasks of the
  services registered in its target group. An application load balancer's
  HTTP or HTTPS listener is an HTTP/1.1 proxy (alb.py) that evaluates the
  listener's rules (DescribeRules) and default actions for each request:
  `forward` to the registered targets of the target group (round robin),
  `fixed-response`, `redirect`. An HTTPS listener terminates TLS with its
  ACM certificate, whose key the data plane exports from ACM (moto_plus.py
  lets an imported certificate be exported).
- ACM: every container started (ECS tasks, RunTask tasks, and the
  containers of instances booted since) trusts the region's ISSUED ACM
  certificates, as any image trusts a public CA's: while at least one
  exists, SSL_CERT_FILE names a bundle (the system's CA bundle, the data
  plane's CA and each certificate with its chain) mounted read-only from
  the state dir.
- Auto Scaling groups: each InService instance boots from its launch
  template's user data, run unchanged by bash in a private mount namespace
  (its own /etc and /var/run, hostname from EC2), with `dnf` and `systemctl`
  stubbed, `aws` the real AWS CLI talking to moto and `docker` podman's CLI
  on that instance's own podman service at /var/run/docker.sock. A terminated
  instance loses its containers.
- ElastiCache replication groups: a real redis-server per available group,
  with the group's auth token, reachable at the endpoint moto reports. The
  tokens it accepts follow the group's settings file (moto_dataplane.py
  rewrites it when ModifyReplicationGroup changes the token): applied with
  ACL SETUSER default (no restart, connections kept), both tokens after a
  ROTATE until a SET, as on AWS. A group that had no token and was given
  one by ROTATE requires it (AWS also still lets clients in without a token;
  Redis cannot do both). It
  runs the group's parameter group (that of its primary member cluster,
  DescribeCacheClusters): `maxmemory-policy`, and `maxmemory` when set, as
  DescribeCacheParameters reports them, passed at start and applied with
  CONFIG SET (no restart) when the group's parameter group or its
  parameters change. Under a default group (`default.redis7`) redis-server
  keeps its own defaults (`noeviction`, no `maxmemory`). The status entry
  of each redis names its `parameter_group` and the `maxmemory_policy`
  redis-server reports running (CONFIG GET; null until it first answered).
- MemoryDB clusters: a real redis-server per available cluster, answering
  as MemoryDB does: cluster mode (`cluster-enabled yes`, its own
  nodes.conf), all 16384 slots its own (CLUSTER ADDSLOTSRANGE 0 16383 once
  it is up; served once CLUSTER INFO says cluster_state:ok), and CLUSTER
  SLOTS and CLUSTER SHARDS naming it by the hostname of the cluster's first
  node endpoint and the endpoint port (`cluster-announce-hostname`,
  `cluster-preferred-endpoint-type hostname`, `cluster-announce-tls-port`
  with TLS, else `cluster-announce-port`), so a cluster client follows them
  to the gateway. TLS as the cluster's TLSEnabled, with a certificate of the
  data plane's CA for the cluster endpoint and every node endpoint (all
  reachable at the gateway on the endpoint port). Its users are those of
  the cluster's ACL: each with its passwords (written by moto_dataplane.py
  at CreateUser and UpdateUser) and its access string; `default` is off
  unless the ACL is `open-access`. A change to the ACL's users or to a
  user's passwords or access string is applied with ACL SETUSER and ACL
  DELUSER, without a restart. The redis-server stops once the cluster is
  no longer `available`: at DeleteCluster (`deleting`). The status lists the clusters served (`memorydb`: name, address,
  nodes, loopback port, endpoint_port, tls, acl and users).
- Instances boot once every available ElastiCache group and MemoryDB
  cluster is served: their names are in the hosts file an instance gets at
  boot, and never after.
- Logs: containers whose log driver is awslogs have their output put into
  the CloudWatch Logs group and stream the driver would use.
- Public images: pulls of `public.ecr.aws/...` come from the registry, as
  through a pull-through cache; only what was pushed there exists. With
  `--otel-collector IMAGE=PORT` the data plane pushes, under IMAGE's name, a
  stand-in for the AWS Distro for OpenTelemetry collector (which cannot be
  had here): it takes OTLP/HTTP on port 4318, as the collector does, and
  relays each connection to the loopback port PORT (the test's OTLP
  receiver) instead of exporting to X-Ray.

Networking: one internal podman bridge (no route off the machine) plays the
VPC. Containers reach the AWS endpoint, redis and any `--forward`ed loopback
port through forwarders on the bridge's gateway address; the host reaches
each ECS service through a loopback forwarder listed in the status.

Nothing here is known to the product: it only reads what `up` asked AWS for.

Ready when it prints `dataplane ready: http://127.0.0.1:PORT` (the status
API: GET /status). Stops everything it started on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import fcntl
import hashlib
import http.server
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
LABEL = "dataplane"
# The hard limits of this sandbox are below what EC2 and Fargate allow.
NOFILE_MAX = 20000
POLL_SECONDS = 1.0
# Containers get the data plane's CA bundle as their system bundle.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Where containers see the state dir's acm-trust/ (the bundle of the ACM
# certificates they trust), and the bundle in it SSL_CERT_FILE names.
ACM_TRUST_DIR = "/etc/ssl/acm-trust"
ACM_TRUST_FILE = f"{ACM_TRUST_DIR}/ca-bundle.pem"
# Public images (the registry serves them, as a pull-through cache would).
PUBLIC_ECR = "public.ecr.aws"
# The port the AWS Distro for OpenTelemetry collector takes OTLP/HTTP on.
OTLP_HTTP_PORT = 4318
# Every key type ListCertificates knows: by default it lists RSA_2048 ones only.
ACM_KEY_TYPES = ["RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1"]


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def epoch_millis(stamp: str) -> int:
    """podman's RFC 3339 log timestamp (nanoseconds) in epoch milliseconds."""
    try:
        head, _, frac = stamp.rstrip("Z").partition(".")
        whole = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.timezone.utc)
        return int(whole.timestamp() * 1000) + int((frac + "000")[:3])
    except ValueError:
        return int(time.time() * 1000)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Forwarder:
    """A TCP forwarder: `listen` -> one of `targets()` (round robin)."""

    def __init__(self, listen: tuple[str, int], targets, name: str):
        self.name = name
        self.targets = targets
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(listen)
        self.sock.listen(128)
        self.address = self.sock.getsockname()
        self.next = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"fwd {name}").start()

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        targets = list(self.targets())
        if not targets:
            client.close()
            return
        self.next += 1
        target = targets[self.next % len(targets)]
        try:
            upstream = socket.create_connection(target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
                try:
                    s.shutdown(how)
                except OSError:
                    pass


class Podman:
    """podman's CLI on the data plane's own storage (vfs, like the harness)."""

    def __init__(self, state: Path):
        self.state = state
        for sub in ("root", "run", "tmp", "networks"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        self.runroot = state / "run"
        if len(str(self.runroot)) > 50:
            raise SystemExit(f"podman refuses a run root of more than 50 characters: {self.runroot}")
        self.flags = [
            "--root", str(state / "root"),
            "--runroot", str(self.runroot),
            "--tmpdir", str(state / "tmp"),
            "--storage-driver", "vfs",
        ]  # fmt: skip

    def conf(
        self,
        path: Path,
        env: list[str] | None = None,
        netns: str | None = None,
        volumes: list[str] | None = None,
    ) -> None:
        lines = [
            "[containers]",
            'default_ulimits = ["nproc=4096:4096", "nofile=1024:1024"]',
        ]
        if netns:
            lines.append(f'netns = "{netns}"')
        if volumes:
            lines.append("volumes = [" + ", ".join(json.dumps(v) for v in volumes) + "]")
        if env:
            lines.append("env = [" + ", ".join(json.dumps(e) for e in env) + "]")
        lines += [
            "[engine]",
            'runtime = "runc"',
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            'lock_type = "file"',
            "[network]",
            f'network_config_dir = "{self.state / "networks"}"',
        ]
        path.write_text("\n".join(lines) + "\n")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(self.state / "containers.conf")
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.state / "registries.conf")
        for k in ("CONTAINER_HOST", "CONTAINER_CONNECTION", "DOCKER_HOST"):
            env.pop(k, None)
        return env

    def run(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(
            ["podman", *self.flags, *args],
            env=self.env(),
            capture_output=True,
            text=True,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:3])}: {out.stderr.strip()}")
        return out.stdout

    def succeeds(self, *args: str) -> bool:
        """Whether a podman command exits 0 (its output is dropped)."""
        return subprocess.run(["podman", *self.flags, *args], env=self.env(), capture_output=True).returncode == 0

    def remove_all(self, graceful: bool = False) -> None:
        """Removes every container of this storage: killed at once, or
        `graceful`ly (SIGTERM, then each container's stop timeout before
        SIGKILL, as Docker stops them when a host shuts down)."""
        grace = [] if graceful else ["--time", "0"]
        # A task's first container goes only after the sidecars in its
        # network namespace, which `rm --all` may not have taken yet.
        sidecars = self.run("ps", "-aq", "--filter", f"label={LABEL}.kind=sidecar", check=False).split()
        if sidecars:
            self.run("rm", "--force", *grace, *sidecars, check=False)
        self.run("rm", "--all", "--force", *grace, check=False)

    def containers(self) -> list[dict]:
        out = self.run("ps", "-a", "--format", "json", "--filter", f"label={LABEL}")
        return json.loads(out or "[]")


class Task:
    """One ECS task: a container the data plane started for a service."""

    def __init__(self, row: dict):
        labels = row.get("Labels") or {}
        self.id = row["Id"]
        self.service = labels.get(f"{LABEL}.service", "")
        self.taskdef = labels.get(f"{LABEL}.taskdef", "")
        self.port = int(labels.get(f"{LABEL}.port", "0") or 0)
        self.running = row.get("State") == "running"
        self.created = row.get("Created", 0)


class Instance:
    """An emulated EC2 instance: a network namespace in the VPC (held by a
    pause container on the bridge) with a mount and UTS namespace of its own,
    in which instance-boot.sh starts the instance's Docker engine and runs
    the user data. Containers the user data starts share the instance's
    network, as with host networking on EC2.
    """

    def __init__(self, plane: "Dataplane", instance_id: str, group: str, user_data: str, hostname: str):
        self.id = instance_id
        self.group = group
        self.dir = plane.state / "i" / instance_id
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        (self.dir / "user-data").write_text(user_data)
        # Docker pulls public images before any `docker login`: podman wants
        # the file REGISTRY_AUTH_FILE names to exist for that.
        (self.dir / "auth.json").write_text('{"auths": {}}\n')
        (self.dir / "hostname").write_text(hostname + "\n")
        hosts = "".join(f"{ip}\t{name}\n" for name, ip in plane.host_entries().items())
        (self.dir / "hosts").write_text(hosts)
        # The instance's Docker engine has storage of its own: its own images
        # (pulled by its user data) and its own container names.
        self.podman = Podman(self.dir)
        trust_volumes, trust_env = plane.acm_trust()
        self.podman.conf(
            self.podman.state / "containers.conf",
            env=plane.container_aws_env() + [f"{k}={v}" for k, v in trust_env.items()],
            netns="host",
            volumes=[f"{plane.ca.bundle}:{CA_BUNDLE}:ro", *trust_volumes],
        )
        plane.registries_conf(self.podman.state / "registries.conf", plane.ecr_host)
        env = self.podman.env()
        env.update(
            INSTANCE_ID=instance_id,
            INSTANCE_DIR=str(self.dir),
            DATAPLANE_LABEL=LABEL,
            DATAPLANE_ID=plane.name,
            PODMAN_FLAGS=" ".join(self.podman.flags),
            REGISTRY_AUTH_FILE=str(self.dir / "auth.json"),
            PATH=f"{HERE / 'bin'}:{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        )
        # The instance's AWS CLI talks to the endpoint as its containers do.
        env.update(item.split("=", 1) for item in plane.container_aws_env())
        self.pause = f"{plane.name}-{instance_id}"
        plane.podman.run(
            "run", "--detach", "--name", self.pause, "--network", plane.network,
            "--hostname", hostname,
            "--label", f"{LABEL}={plane.name}", "--label", f"{LABEL}.kind=instance",
            "--label", f"{LABEL}.instance={instance_id}",
            plane.busybox, "sleep", "2147483647",
        )  # fmt: skip
        pid = plane.podman.run("inspect", "--format", "{{.State.Pid}}", self.pause).strip()
        self.log = open(self.dir / "instance.log", "wb")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/proc/{pid}/ns/net",
             "unshare", "--mount", "--uts", "--propagation", "private", "--",
             "bash", str(HERE / "instance-boot.sh")],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        (self.dir / "pid").write_text(str(self.proc.pid))

    def boot(self) -> str:
        rc = self.dir / "boot.rc"
        if rc.exists():
            return "ok" if rc.read_text().strip() == "0" else "failed"
        if self.proc.poll() is not None:
            return "failed"
        return "booting"

    def restart_exited(self) -> None:
        """What Docker's `--restart always` does for the instance's containers."""
        exited = self.podman.run(
            "ps", "--all", "--quiet", "--filter", "restart-policy=always", "--filter", "status=exited", check=False
        ).split()
        if exited:
            log(f"ec2 {self.id}: restarting {len(exited)} exited container(s) (restart policy always)")
            # Through the instance's engine: its mounts (/var/run/docker.sock)
            # and network are those of the instance's namespaces.
            out = subprocess.run(
                ["podman", "--url", f"unix://{self.dir / 'docker.sock'}", "start", *exited],
                capture_output=True, text=True,
            )  # fmt: skip
            if out.returncode != 0:
                log(f"ec2 {self.id}: restart failed: {out.stderr.strip()}")

    def status(self) -> dict:
        return {
            "id": self.id,
            "group": self.group,
            "boot": self.boot(),
            "boot_log": str(self.dir / "boot.log"),
        }

    def stop(self, podman: Podman, graceful: bool = False) -> None:
        # conmon outlives the engine: remove the containers first.
        self.podman.remove_all(graceful)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=3)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        podman.run("rm", "--force", "--time", "0", self.pause, check=False)
        self.log.close()


class CertificateAuthority:
    """The CA behind the certificates of emulated endpoints (ElastiCache's
    and MemoryDB's TLS). `bundle` is the system's CA bundle plus this CA:
    containers get it as their system bundle, in place of the public roots
    that AWS's certificates chain to."""

    def __init__(self, dir: Path):
        dir.mkdir(parents=True, exist_ok=True)
        self.dir = dir
        self.key = dir / "ca.key"
        self.cert = dir / "ca.pem"
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(self.key), "-out", str(self.cert), "-days", "7",
            "-subj", "/CN=stackctl AWS data plane CA",
        )  # fmt: skip
        self.bundle = dir / "bundle.pem"
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        self.bundle.write_text((system.read_text() if system.exists() else "") + self.cert.read_text())

    def issue(self, names: list[str], dir: Path, stem: str = "server") -> tuple[Path, Path]:
        """A key and a certificate valid for every name of `names` (its
        subjectAltName; the first is also its CN when it fits in one, 64
        characters), as `dir`/`stem`.key and .pem."""
        key, csr, cert = dir / f"{stem}.key", dir / f"{stem}.csr", dir / f"{stem}.pem"
        ext = dir / f"{stem}.ext"
        ext.write_text(f"subjectAltName={','.join(f'DNS:{n}' for n in names)}\nextendedKeyUsage=serverAuth\n")
        cn = names[0] if len(names[0]) <= 64 else "stackctl AWS data plane endpoint"
        openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-out", str(cert), "-days", "7", "-extfile", str(ext),
        )  # fmt: skip
        return key, cert


def openssl(*args: str) -> None:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {args[0]}: {out.stderr.strip()}")


# The settings of a replication group's parameter group that its
# redis-server runs, and redis-server's own values for them, which it keeps
# under a default parameter group (`default.*`) or none.
REDIS_PARAMETERS = ("maxmemory-policy", "maxmemory")
REDIS_DEFAULTS = {"maxmemory-policy": "noeviction", "maxmemory": "0"}
# The values passed to redis-server at start: one it would refuse would keep
# it from starting, so any other is left to CONFIG SET (which refuses it alone).
CONF_VALUES = {
    "maxmemory-policy": re.compile(r"(volatile|allkeys)-(lru|lfu|random)|volatile-ttl|noeviction"),
    "maxmemory": re.compile(r"[0-9]+([kmg]b?)?", re.IGNORECASE),
}


class RedisError(Exception):
    """An error reply of redis-server."""


def _resp(args: tuple[str, ...]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        out += [f"${len(data)}\r\n".encode(), data, b"\r\n"]
    return b"".join(out)


def _reply(reader) -> object:
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis-server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:size].decode()
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_reply(reader) for _ in range(size)]
    raise RedisError(f"unexpected reply {line!r}")


def redis_command(
    port: int, *args: str, password: str | None = None, tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None, timeout: float = 5.0, username: str | None = None,
) -> object:  # fmt: skip
    """Runs one command on the redis-server at 127.0.0.1:`port` (after AUTH
    with `password`, as `username` when given; over TLS with `tls`) and
    returns its reply; RedisError for an error reply, OSError when it cannot
    be reached."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname)
        reader = sock.makefile("rb")
        reply = None
        auth = ("AUTH", *([username] if username else []), password)
        for command in [*([auth] if password else []), args]:
            sock.sendall(_resp(command))
            reply = _reply(reader)
        return reply
    finally:
        sock.close()


def primary_cluster_id(group: dict) -> str | None:
    """The primary member cluster of a replication group (as
    DescribeReplicationGroups answers it), else its first member."""
    for node_group in group.get("NodeGroups") or []:
        for member in node_group.get("NodeGroupMembers") or []:
            if member.get("CurrentRole") == "primary":
                return member.get("CacheClusterId")
    members = group.get("MemberClusters") or []
    return members[0] if members else None


def redis_parameters(elasticache, group: dict) -> tuple[str | None, dict[str, str]]:
    """The parameter group of the replication group's primary
    (DescribeCacheClusters) and what of it redis-server runs:
    REDIS_PARAMETERS as DescribeCacheParameters reports them (user values
    over the family's defaults; `maxmemory` only when set). A default group
    (`default.*`) or none gives nothing: redis-server keeps its own defaults."""
    cluster_id = primary_cluster_id(group)
    if not cluster_id:
        return None, {}
    try:
        clusters = elasticache.describe_cache_clusters(CacheClusterId=cluster_id)["CacheClusters"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("CacheClusterNotFound", "CacheClusterNotFoundFault"):
            return None, {}
        raise
    name = ((clusters[0].get("CacheParameterGroup") or {}) if clusters else {}).get("CacheParameterGroupName")
    if not name or name.startswith("default."):
        return name, {}
    params: dict[str, str] = {}
    try:
        pages = elasticache.get_paginator("describe_cache_parameters").paginate(CacheParameterGroupName=name)
        for page in pages:
            for p in page.get("Parameters") or []:
                if p.get("ParameterName") in REDIS_PARAMETERS and p.get("ParameterValue"):
                    params[p["ParameterName"]] = p["ParameterValue"]
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "CacheParameterGroupNotFound":
            raise
    return name, params


def redis_conf_lines(params: dict[str, str]) -> list[str]:
    """redis.conf lines for a parameter group's settings (redis_parameters)."""
    return [f"{name} {value}" for name, value in _conf_params(params).items()]


def _conf_params(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k in CONF_VALUES and CONF_VALUES[k].fullmatch(v)}


class RedisServer:
    """A real redis-server standing in for a managed Redis endpoint (an
    ElastiCache group, a MemoryDB cluster): on a loopback port of its own,
    reachable from the VPC at (gateway, the endpoint's port) through a
    forwarder under every name of `names` (the VPC's DNS resolves them to
    the gateway: Dataplane.host_entries), over TLS with a certificate of the
    data plane's CA for those names when `tls`. Nothing persists (`save ''`,
    `appendonly no`): snapshots are not emulated. A subclass adds what else
    it runs (`base_conf` + its lines, then `start`) and the credentials the
    data plane talks to it with (`username`, `password`)."""

    def __init__(self, plane: "Dataplane", label: str, dir: Path, names: list[str], endpoint_port: int, tls: bool):
        self.label = label
        self.names = list(names)
        self.address = self.names[0]
        self.endpoint_port = endpoint_port
        self.port = free_port()
        self.dir = dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.tls_context = ssl.create_default_context(cafile=str(plane.ca.cert)) if tls else None
        self.username: str | None = None
        self.password: str | None = None
        self.proc: subprocess.Popen | None = None
        self.forwarder: Forwarder | None = None

    def base_conf(self, plane: "Dataplane") -> list[str]:
        conf = ["bind 127.0.0.1", "save ''", "appendonly no", f"dir {self.dir}"]
        if self.tls:
            # In-transit encryption: a certificate for the endpoint's names,
            # signed by the data plane's CA, which containers trust.
            key, cert = plane.ca.issue(self.names, self.dir)
            conf += [
                "port 0", f"tls-port {self.port}", f"tls-cert-file {cert}", f"tls-key-file {key}",
                f"tls-ca-cert-file {plane.ca.cert}", "tls-auth-clients no",
            ]  # fmt: skip
        else:
            conf.append(f"port {self.port}")
        return conf

    def start(self, plane: "Dataplane", conf: list[str]) -> None:
        """Starts redis-server on `conf` (a file only its owner reads: it
        holds credentials) behind the gateway's forwarder. The forwarder
        comes first: an endpoint port another server holds on the gateway
        is an error before any process was started."""
        try:
            self.forwarder = Forwarder(
                (plane.gateway, self.endpoint_port), lambda: [("127.0.0.1", self.port)], self.label
            )
        except OSError as e:
            raise RuntimeError(
                f"cannot listen on {plane.gateway}:{self.endpoint_port} (another ElastiCache group or MemoryDB "
                f"cluster on that port?): {e}"
            ) from e
        conf_path = self.dir / "redis.conf"
        conf_path.unlink(missing_ok=True)
        fd = os.open(conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.log = open(self.dir / "redis.log", "wb")
        self.proc = subprocess.Popen(
            ["redis-server", str(conf_path)], stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (self.dir / "pid").write_text(str(self.proc.pid))

    def command(self, *args: str) -> object:
        return redis_command(
            self.port, *args, username=self.username, password=self.password, tls=self.tls_context,
            server_hostname=self.address,
        )  # fmt: skip

    def wait_listening(self, seconds: float = 2.0) -> None:
        """Gives a redis-server just started a moment to listen; one that
        exited is an error naming the last line it logged."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.command("PING")
                return
            except OSError:
                if self.proc is not None and self.proc.poll() is not None:
                    lines = (self.dir / "redis.log").read_text(errors="replace").strip().splitlines()
                    raise RuntimeError(
                        f"redis-server exited ({self.proc.returncode}): {lines[-1] if lines else 'no output'}"
                    ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.forwarder is not None:
            self.forwarder.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            self.log.close()


def redis_auth_tokens(settings: dict) -> list[str]:
    """The tokens a replication group's redis-server accepts, newest first,
    from its settings file (written by moto_dataplane.py); none: no AUTH
    needed. The group accepting no token as well as one (`null` among its
    `auth_tokens`, after a ROTATE from none) is left out: Redis either
    requires a password or takes none (`nopass` refuses AUTH <token> with an
    error), and clients given the token must get in."""
    tokens = settings.get("auth_tokens") or [settings.get("auth_token")]
    return [t for t in tokens if t]


class Redis(RedisServer):
    """A real redis-server standing in for one ElastiCache replication group:
    with the group's auth token, TLS and port, and the settings of its
    parameter group (redis_parameters), passed at start and applied with
    CONFIG SET when they change (`sync`). The tokens it accepts follow the
    group's settings file (`sync_auth`)."""

    def __init__(
        self, plane: "Dataplane", group: dict, settings: dict, parameter_group: str | None = None,
        params: dict[str, str] | None = None,
    ):  # fmt: skip
        self.id = group["ReplicationGroupId"]
        endpoint = group["NodeGroups"][0]["PrimaryEndpoint"]
        super().__init__(
            plane, f"redis {self.id}", plane.state / "redis" / self.id, [endpoint["Address"]],
            int(endpoint.get("Port") or 6379), bool(settings.get("transit_encryption")),
        )  # fmt: skip
        conf = self.base_conf(plane)
        if settings.get("auth_token"):
            conf.append(f"requirepass {settings['auth_token']}")
        params = dict(params or {})
        conf += redis_conf_lines(params)
        self.password = settings.get("auth_token") or None
        # The tokens redis-server accepts (redis_auth_tokens).
        self.auth_tokens: list[str] = [self.password] if self.password else []
        self.parameter_group = parameter_group
        # What redis-server was told of REDIS_PARAMETERS (its defaults
        # unless the parameter group says otherwise), and the policy it
        # reports running (CONFIG GET), None until it answered.
        self.running = {**REDIS_DEFAULTS, **_conf_params(params)}
        self.maxmemory_policy: str | None = None
        self.start(plane, conf)

    def sync_auth(self, settings: dict) -> bool:
        """Makes the running server accept the tokens of the group's settings
        now (redis_auth_tokens) with ACL SETUSER default: `resetpass` and
        their SHA-256 hashes (`#...`, not in clear), or `nopass` for none
        (CONFIG SET requirepass would hold one token only, and a ROTATE leaves
        two). No restart, and connections stay authenticated. The data plane
        then authenticates with the newest. Returns whether they changed."""
        tokens = redis_auth_tokens(settings)
        if tokens == self.auth_tokens:
            return False
        if self.maxmemory_policy is None:
            self.wait_listening()
        rules = ["resetpass", *("#" + hashlib.sha256(t.encode()).hexdigest() for t in tokens)] if tokens else ["nopass"]
        self.command("ACL", "SETUSER", "default", *rules)
        self.auth_tokens, self.password = tokens, (tokens[0] if tokens else None)
        log(f"redis {self.id}: auth token changed: {len(tokens) or 'no'} token(s) accepted")
        return True

    def sync(self, parameter_group: str | None, params: dict[str, str]) -> list[str]:
        """Applies the parameter group's settings to the running server
        (CONFIG SET, no restart): those that changed since it was told, and
        the defaults back for those no longer set. Reads back the policy it
        runs. Returns (and logs) what it changed, as `name value`; a value
        redis-server refuses is a RedisError once the others are applied."""
        if self.maxmemory_policy is None:
            self.wait_listening()
        self.parameter_group = parameter_group
        changed, refused = [], []
        for name, value in {**REDIS_DEFAULTS, **params}.items():
            if self.running.get(name) != value:
                try:
                    self.command("CONFIG", "SET", name, value)
                except RedisError as e:
                    refused.append(f"CONFIG SET {name} {value}: {e}")
                    continue
                self.running[name] = value
                changed.append(f"{name} {value}")
        if changed:
            log(f"redis {self.id}: {parameter_group}: CONFIG SET {', '.join(changed)}")
        if changed or refused or self.maxmemory_policy is None:
            answer = self.command("CONFIG", "GET", "maxmemory-policy")
            self.maxmemory_policy = answer[1] if isinstance(answer, list) and len(answer) > 1 else None
        if refused:
            raise RedisError("; ".join(refused))
        return changed


# The user the data plane is on a MemoryDB cluster's redis-server (it
# assigns the slots, reads the cluster state and applies the ACL's
# changes): a name no MemoryDB user can have (theirs have no underscore).
MEMORYDB_ADMIN = "dataplane_admin"
SLOTS = 16384


def memorydb_endpoints(cluster: dict) -> tuple[str, list[str], int]:
    """A MemoryDB cluster's (DescribeClusters with ShowShardDetails)
    endpoint name, its nodes' endpoint names (the first shard's first node
    first) and the endpoint port."""
    endpoint = cluster.get("ClusterEndpoint") or {}
    nodes = [
        node["Endpoint"]["Address"]
        for shard in cluster.get("Shards") or []
        for node in shard.get("Nodes") or []
        if (node.get("Endpoint") or {}).get("Address")
    ]
    return endpoint["Address"], nodes, int(endpoint.get("Port") or 6379)


def memorydb_acl_rules(state: Path, acl: dict, users: dict[str, dict]) -> dict[str, list[str]]:
    """The Redis ACL rules (ACL SETUSER's, after `reset`) of each user of a
    MemoryDB ACL (DescribeACLs), from what DescribeUsers says of them
    (`users`, by name): the user's passwords, from the state file
    moto_dataplane.py writes, as SHA-256 hashes (`#...`: neither redis.conf
    nor a command holds them in clear, and no quoting is needed); `nopass`
    for one without password (`default`); none for an IAM user (the data
    plane cannot check IAM tokens); then its access string, whose `on` or
    `off` says whether it may log in (neither: off, as on MemoryDB).
    `default` is off unless the ACL holds it (`open-access`). A user the ACL
    names but DescribeUsers no longer lists was just deleted: left out."""
    rules = {"default": ["off"]}
    for name in acl.get("UserNames") or []:
        user = users.get(name)
        if user is None:
            continue
        kind = (user.get("Authentication") or {}).get("Type")
        credentials: list[str] = []
        if kind == "password":
            path = state / "memorydb" / "users" / f"{name}.json"
            try:
                passwords = json.loads(path.read_text()).get("passwords") or []
            except (OSError, ValueError) as e:
                raise RuntimeError(f"no passwords known for user {name} ({path}: {e})") from e
            credentials = ["#" + hashlib.sha256(p.encode()).hexdigest() for p in passwords]
        elif kind == "no-password":
            credentials = ["nopass"]
        rules[name] = [*credentials, *(user.get("AccessString") or "").split()]
    return rules


class MemoryDB(RedisServer):
    """A real redis-server standing in for one MemoryDB cluster, answering as
    MemoryDB does: in cluster mode, serving all 16384 slots, and naming
    itself in CLUSTER SLOTS and CLUSTER SHARDS by the hostname of the
    cluster's first node endpoint and the endpoint's port (where a cluster
    client then connects, through the VPC's DNS and the gateway's
    forwarder), not by its loopback address. TLS as the cluster's
    TLSEnabled; its users are those of the cluster's ACL
    (memorydb_acl_rules), given at start and applied with ACL SETUSER and
    ACL DELUSER when they change (`sync`; no restart). One server whatever
    the shard and replica counts: the replicas' names reach it too."""

    def __init__(self, plane: "Dataplane", cluster: dict, rules: dict[str, list[str]]):
        self.name = cluster["Name"]
        address, nodes, port = memorydb_endpoints(cluster)
        super().__init__(
            plane, f"memorydb {self.name}", plane.state / "memorydb" / "clusters" / self.name, [address, *nodes],
            port, bool(cluster.get("TLSEnabled")),
        )  # fmt: skip
        self.nodes = nodes
        self.announced = nodes[0] if nodes else address
        self.acl = cluster.get("ACLName")
        self.users: list[str] = []
        # What redis-server was told, by user (memorydb_acl_rules).
        self.rules = dict(rules)
        self.ready = False
        self.certificates = 1
        self.username, self.password = MEMORYDB_ADMIN, secrets.token_hex(24)
        # A cluster created again under the same name starts empty, as on AWS.
        (self.dir / "nodes.conf").unlink(missing_ok=True)
        conf = self.base_conf(plane) + [
            "cluster-enabled yes",
            f"cluster-config-file {self.dir / 'nodes.conf'}",
            # The bus port would be the port + 10000, beyond 65535 for many.
            f"cluster-port {free_port()}",
            f"cluster-announce-hostname {self.announced}",
            "cluster-preferred-endpoint-type hostname",
        ]
        if self.tls:
            conf += ["tls-cluster yes", f"cluster-announce-tls-port {self.endpoint_port}"]
        else:
            conf.append(f"cluster-announce-port {self.endpoint_port}")
        conf.append(f"user {MEMORYDB_ADMIN} reset on #{hashlib.sha256(self.password.encode()).hexdigest()} ~* &* +@all")
        conf += [f"user {name} {' '.join(['reset', *r])}" for name, r in rules.items()]
        self.start(plane, conf)

    def cluster_info(self) -> dict[str, str]:
        answer = str(self.command("CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in answer.splitlines() if ":" in line)

    def sync(self, plane: "Dataplane", cluster: dict, users: list[str], rules: dict[str, list[str]]) -> None:
        """Brings the running server to the cluster as described now: its
        users (ACL SETUSER, `reset` first so old passwords go, for a new or
        changed one; ACL DELUSER, which disconnects it, for one no longer
        in the ACL), a certificate for the node names when they changed (a
        new replica count) and the announced hostname; until it is ready,
        its slots (CLUSTER ADDSLOTSRANGE 0 16383 once) and its state: ready
        once CLUSTER INFO says cluster_state:ok."""
        if not self.ready:
            self.wait_listening()
        self.acl, self.users = cluster.get("ACLName"), users
        changed = []
        for name, r in rules.items():
            if self.rules.get(name) != r:
                self.command("ACL", "SETUSER", name, "reset", *r)
                self.rules[name] = r
                changed.append(name)
        for name in [n for n in self.rules if n not in rules]:
            self.command("ACL", "DELUSER", name)
            del self.rules[name]
            changed.append(f"-{name}")
        if changed:
            log(f"memorydb {self.name}: ACL {self.acl}: users {', '.join(changed)} applied")
        address, nodes, _ = memorydb_endpoints(cluster)
        if [address, *nodes] != self.names:
            if self.tls:
                self.certificates += 1
                key, cert = plane.ca.issue([address, *nodes], self.dir, f"server-{self.certificates}")
                self.command("CONFIG", "SET", "tls-cert-file", str(cert), "tls-key-file", str(key))
            self.names, self.nodes = [address, *nodes], nodes
            announced = nodes[0] if nodes else address
            if announced != self.announced:
                self.command("CONFIG", "SET", "cluster-announce-hostname", announced)
                self.announced = announced
            log(f"memorydb {self.name}: nodes {', '.join(nodes)}")
        if not self.ready:
            info = self.cluster_info()
            if info.get("cluster_slots_assigned") == "0":
                self.command("CLUSTER", "ADDSLOTSRANGE", "0", str(SLOTS - 1))
                info = self.cluster_info()
            if info.get("cluster_state") == "ok":
                self.ready = True
                log(f"memorydb {self.name}: cluster_state ok, slots 0-{SLOTS - 1} announced at "
                    f"{self.announced}:{self.endpoint_port}")  # fmt: skip


class LogShipper:
    """Puts a container's output into CloudWatch Logs, as the awslogs driver
    does: follows the container's k8s-file log (which survives restarts) and
    sends what arrived every half second, or at once on `drain`."""

    def __init__(self, plane: "Dataplane", podman: Podman, container: str, group: str, stream: str):
        self.plane = plane
        self.container = container
        self.group = group
        self.stream = stream
        info = json.loads(podman.run("inspect", container))[0]
        self.path = Path(info.get("LogPath") or info["HostConfig"]["LogConfig"]["Path"])
        self.lock = threading.Lock()
        self.offset = 0
        self.partial = ""
        # Text of a line podman split into partial (P) records, until its final (F) record.
        self.pending = ""
        self.ready = False
        threading.Thread(target=self._run, daemon=True, name=f"logs {container[:12]}").start()

    def _run(self) -> None:
        while not self.plane.stopping.wait(0.5):
            if not self.drain():
                return

    def drain(self) -> bool:
        """Sends every complete line written so far; False once the log is gone."""
        with self.lock:
            logs = self.plane.logs
            if not self.ready:
                try:
                    logs.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
                except logs.exceptions.ResourceAlreadyExistsException:
                    pass
                except Exception as e:  # noqa: BLE001 - the group may not exist
                    log(f"log stream {self.group}/{self.stream}: {e}")
                    return False
                self.ready = True
            try:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    f.seek(self.offset)
                    data = f.read()
                    self.offset = f.tell()
            except FileNotFoundError:
                return False  # the container was removed
            lines = (self.partial + data).split("\n")
            self.partial = lines.pop()
            events = []
            for line in lines:
                # k8s-file: "<RFC 3339 time> <stream> <F|P> <text>"; a long
                # line comes as P records ending with an F record.
                parts = line.split(" ", 3)
                if len(parts) < 3:
                    continue
                self.pending += parts[3] if len(parts) == 4 else ""
                if parts[2] == "P":
                    continue
                message, self.pending = self.pending, ""
                # The awslogs driver skips empty lines; CloudWatch refuses them.
                if message:
                    events.append({"timestamp": epoch_millis(parts[0]), "message": message})
            for i in range(0, len(events), 1000):
                self._put(events[i : i + 1000])
            return True

    def _put(self, events: list[dict]) -> None:
        try:
            self.plane.logs.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)
        except Exception as e:  # noqa: BLE001 - a lost batch is reported, not fatal
            log(f"put_log_events {self.group}/{self.stream}: {e}")


class Dataplane:
    def __init__(self, args: argparse.Namespace):
        self.endpoint = args.endpoint.rstrip("/")
        self.region = args.region
        self.access_key = os.environ.get("AWS_ACCESS_KEY_ID", "testing")
        self.secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
        self.registry = args.registry
        self.forward_ports = list(args.forward)
        # (image, loopback port) of the collector stand-in, if any.
        self.otel_collector: tuple[str, int] | None = None
        if args.otel_collector:
            image, _, port = args.otel_collector.rpartition("=")
            if not image.startswith(PUBLIC_ECR + "/") or not port.isdigit():
                raise SystemExit(f"--otel-collector wants {PUBLIC_ECR}/NAME:TAG=PORT, not {args.otel_collector}")
            self.otel_collector = (image, int(port))
            if int(port) not in self.forward_ports:
                self.forward_ports.append(int(port))
        self.state = Path(args.state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.name = args.name or f"dp{uuid.uuid4().hex[:8]}"
        self.network = f"{self.name}-vpc"
        self.podman = Podman(self.state)
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        cfg = Config(retries={"max_attempts": 3, "mode": "standard"})

        def client(service: str):
            return session.client(service, endpoint_url=self.endpoint, config=cfg)

        self.ecs = client("ecs")
        self.ec2 = client("ec2")
        self.asg = client("autoscaling")
        self.ssm = client("ssm")
        self.logs = client("logs")
        self.elasticache = client("elasticache")
        self.memorydb = client("memorydb")
        self.cloudmap = client("servicediscovery")
        self.elbv2 = client("elbv2")
        self.acm = client("acm")
        self.sts = client("sts")
        self.lock = threading.RLock()
        self.instances: dict[str, Instance] = {}
        self.redis: dict[str, Redis] = {}
        # Replication group id -> the last failure to serve it (reported once).
        self.redis_errors: dict[str, str] = {}
        # MemoryDB cluster name -> its redis-server, and the last failure to serve it.
        self.memorydb_clusters: dict[str, MemoryDB] = {}
        self.memorydb_errors: dict[str, str] = {}
        self.shippers: dict[str, LogShipper] = {}
        self.service_forwarders: dict[str, Forwarder] = {}
        self.targets: dict[str, list[tuple[str, int]]] = {}
        # Target group ARN -> the services that register their tasks in it.
        self.service_lbs: dict[str, list[str]] = {}
        # (load balancer ARN, listener port) -> its forwarder process (lb_forward.py).
        self.lb_listeners: dict[tuple[str, int], subprocess.Popen] = {}
        # The same key -> "tcp" or "http" (the mode its process runs in), and
        # the HTTP listeners' configuration as last written.
        self.lb_modes: dict[tuple[str, int], str] = {}
        self.lb_configs: dict[tuple[str, int], str] = {}
        # ISSUED ACM certificates: ARN -> (the summary's dates, certificate PEM, chain PEM).
        self.acm_certs: dict[str, tuple[str, str, str]] = {}
        # ARN -> (certificate PEM exported, cert file, key file) of listeners' certificates.
        self.listener_certs: dict[str, tuple[str, Path, Path]] = {}
        # What ExportCertificate is asked to encrypt the private keys with.
        self.acm_passphrase = secrets.token_hex(16)
        # Listener certificates that could not be exported (logged once each).
        self.cert_errors: set[str] = set()
        self.acm_trust_dir = self.state / "acm-trust"
        # DNS names of the load balancers, resolved to the router's address.
        self.lb_names: set[str] = set()
        # Each listener, for the status API.
        self.lb_status: list[dict] = []
        self.forwarders: list[Forwarder] = []
        self.taskdefs: dict[str, dict] = {}
        # Task id -> (monotonic time of its last health check, whether it passed).
        self.health_checked: dict[str, tuple[float, bool]] = {}
        self.pulled: set[str] = set()
        self.replaced: dict[str, int] = {}
        self.oneoff_done: set[str] = set()
        self.errors: list[str] = []
        # Instances whose boot waits for an ElastiCache group or MemoryDB cluster to be served (logged once).
        self.boot_waits: set[str] = set()
        self.stopping = threading.Event()
        self.gateway = ""
        self.ecr_host = ""
        self.busybox = ""
        self.step_image = ""
        self.ca = CertificateAuthority(self.state / "ca")

    # ----- setup and teardown

    def setup(self) -> None:
        account = self.sts.get_caller_identity()["Account"]
        self.ecr_host = f"{account}.dkr.ecr.{self.region}.amazonaws.com"
        self.podman.conf(self.state / "containers.conf")
        # ECS pulls (from this host) reach the registry through a prefix
        # rewrite; instances resolve the ECR host by their /etc/hosts to the
        # gateway, where a forwarder leads to the registry, as a VPC endpoint would.
        self.registries_conf(self.state / "registries.conf", self.registry)
        self.busybox = image = self._busybox_image()
        # Emulators on one machine pick their subnets one at a time: a subnet
        # counts as taken once its bridge is up.
        with open("/tmp/stackctl-dataplane-network.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._create_network()
            # The bridge exists only while a container is attached to it: this
            # one keeps the "VPC" (and its gateway address) up for the forwarders.
            self.podman.run(
                "run", "--detach", "--name", f"{self.name}-router", "--network", self.network,
                "--label", f"{LABEL}={self.name}", "--label", f"{LABEL}.kind=router",
                image, "sleep", "2147483647",
            )  # fmt: skip
        router = json.loads(self.podman.run("inspect", f"{self.name}-router"))[0]
        self.router_pid = router["State"]["Pid"]
        self.router_ip = router["NetworkSettings"]["Networks"][self.network]["IPAddress"]
        # A small image in "ECR" for docker steps: instances pull it from there.
        self.podman.run("push", "--quiet", "--tls-verify=false", image, f"{self.registry}/dataplane/busybox:latest")
        self.step_image = f"{self.ecr_host}/dataplane/busybox:latest"
        net = json.loads(self.podman.run("network", "inspect", self.network))[0]
        self.gateway = net["subnets"][0]["gateway"]
        host, _, port = self.endpoint.removeprefix("http://").partition(":")
        self.forwarders.append(
            Forwarder((self.gateway, int(port)), lambda: [(host, int(port))], "aws endpoint")
        )
        reg_host, _, reg_port = self.registry.partition(":")
        self.forwarders.append(
            Forwarder((self.gateway, 80), lambda: [(reg_host, int(reg_port))], "ecr")
        )
        for p in self.forward_ports:
            self.forwarders.append(
                Forwarder((self.gateway, p), lambda p=p: [("127.0.0.1", p)], f"forward {p}")
            )
        if self.otel_collector:
            self._push_collector_standin(*self.otel_collector)

    def _create_network(self) -> None:
        """The "VPC": an internal bridge. Emulators keep separate podman
        configs, so each picks a subnet and bridge name no other one uses."""
        for _ in range(20):
            used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
            third = random.randint(100, 254)
            if f" 10.89.{third}." in used:
                continue
            try:
                self.podman.run("network", "create", "--internal", "--subnet", f"10.89.{third}.0/24", self.network)
            except RuntimeError as e:
                log(f"network 10.89.{third}.0/24: {e}; trying another")
                continue
            # podman 4.3 has no --interface-name: name the bridge in its config.
            path = self.state / "networks" / f"{self.network}.json"
            config = json.loads(path.read_text())
            config["network_interface"] = self.name[:15]
            path.write_text(json.dumps(config, indent=2))
            return
        raise RuntimeError("no free subnet for the data plane's network")

    def registries_conf(self, path: Path, location: str) -> None:
        path.write_text("".join(
            f'[[registry]]\nprefix = "{prefix}"\nlocation = "{location}"\ninsecure = true\n'
            for prefix in (self.ecr_host, PUBLIC_ECR)
        ))  # fmt: skip

    def _busybox_image(self) -> str:
        ref = f"localhost/{self.name}-busybox:latest"
        self._import_busybox(ref, ("sh", "sleep", "cat", "echo"))
        return ref

    def _import_busybox(
        self, ref: str, applets: tuple[str, ...], scripts: dict[str, str] | None = None, entrypoint: str = ""
    ) -> None:
        """Imports as `ref` an image of the host's busybox with `applets` in
        /bin and executable `scripts` (name -> text) at its root."""
        work = Path(tempfile.mkdtemp(dir=self.state / "tmp"))
        rootfs = work / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
        for applet in applets:
            os.symlink("busybox", rootfs / "bin" / applet)
        for name, text in (scripts or {}).items():
            (rootfs / name).write_text(text)
            os.chmod(rootfs / name, 0o755)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(work / "rootfs.tar"), "."], check=True)
        changes = ["--change", "ENV PATH=/bin"]
        if entrypoint:
            changes += ["--change", f"ENTRYPOINT {json.dumps([entrypoint])}"]
        self.podman.run("import", "--quiet", *changes, str(work / "rootfs.tar"), ref)
        shutil.rmtree(work)

    def _push_collector_standin(self, image: str, port: int) -> None:
        """Pushes the collector stand-in as `image` (see the module's doc):
        busybox's nc relays each connection to 4318 to the gateway's
        forwarder of `port`; the collector's arguments (its --config) are
        taken and ignored; /healthcheck passes while 4318 is listened on."""
        local = f"localhost/{self.name}-otel-collector:latest"
        scripts = {
            # As the collector, it ends at SIGTERM (a PID 1 ignores it unless handled).
            "collector": (
                "#!/bin/sh\ntrap 'exit 0' TERM INT\n"
                f"nc -ll -p {OTLP_HTTP_PORT} -e nc {self.gateway} {port} &\nwait\n"
            ),
            "healthcheck": f"#!/bin/sh\nnetstat -ltn | grep -q ':{OTLP_HTTP_PORT} '\n",
        }
        self._import_busybox(local, ("sh", "nc", "netstat", "grep"), scripts, "/collector")
        path = image.removeprefix(PUBLIC_ECR + "/")
        self.podman.run("push", "--quiet", "--tls-verify=false", local, f"{self.registry}/{path}")
        log(f"collector stand-in pushed as {image}, relaying OTLP to 127.0.0.1:{port}")

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            for inst in list(self.instances.values()):
                inst.stop(self.podman)
            self.instances.clear()
            # Containers before their network: without its config podman
            # cannot tear a container's networking down, and keeps it.
            self.podman.remove_all()
            self.podman.run("network", "rm", "--force", self.network, check=False)
            for r in [*self.redis.values(), *self.memorydb_clusters.values()]:
                r.stop()
            for f in [*self.forwarders, *self.service_forwarders.values()]:
                f.close()
            for proc in self.lb_listeners.values():
                proc.terminate()
            # The listeners' decrypted keys do not outlive the data plane.
            shutil.rmtree(self.state / "lb" / "certs", ignore_errors=True)

    # ----- what containers see

    def container_aws_env(self) -> list[str]:
        """The AWS environment a task or instance gets from its platform
        (endpoint and credentials, as the ECS agent and IMDS provide)."""
        port = self.endpoint.rsplit(":", 1)[1]
        return [
            f"AWS_ENDPOINT_URL=http://{self.gateway}:{port}",
            f"AWS_ACCESS_KEY_ID={self.access_key}",
            f"AWS_SECRET_ACCESS_KEY={self.secret_key}",
            f"AWS_REGION={self.region}",
            f"AWS_DEFAULT_REGION={self.region}",
        ]

    def acm_trust(self) -> tuple[list[str], dict[str, str]]:
        """The volumes and environment that make a container trust the
        region's ACM certificates: none while there is none."""
        if not self.acm_certs or not (self.acm_trust_dir / "ca-bundle.pem").exists():
            return [], {}
        # The directory, not the file: a rewritten bundle (renamed into
        # place) is seen by containers already running.
        return [f"{self.acm_trust_dir}:{ACM_TRUST_DIR}:ro"], {"SSL_CERT_FILE": ACM_TRUST_FILE}

    def host_entries(self) -> dict[str, str]:
        """Names the VPC's DNS resolves: ElastiCache endpoints, MemoryDB
        cluster and node endpoints, the ECR host and the load balancers."""
        servers: list[RedisServer] = [*self.redis.values(), *self.memorydb_clusters.values()]
        entries = {name: self.gateway for r in servers for name in r.names}
        entries[self.ecr_host] = self.gateway
        entries.update({name: self.router_ip for name in self.lb_names})
        return entries

    # ----- reconciliation

    def loop(self) -> None:
        while not self.stopping.is_set():
            steps = (self.reconcile_redis, self.reconcile_memorydb, self.reconcile_certificates, self.reconcile_lbs,
                     self.reconcile_ecs, self.reconcile_oneoff, self.reconcile_instances, self.ship_logs)  # fmt: skip
            for step in steps:
                try:
                    with self.lock:
                        if self.stopping.is_set():
                            return
                        step()
                except Exception as e:  # noqa: BLE001 - reported in status, retried next round
                    msg = f"{step.__name__}: {type(e).__name__}: {e}"
                    log(msg)
                    self.errors = (self.errors + [msg])[-20:]
            self.stopping.wait(POLL_SECONDS)

    def reconcile_redis(self) -> None:
        groups = self.elasticache.describe_replication_groups()["ReplicationGroups"]
        live = {}
        for g in groups:
            if g.get("Status") == "available" and g.get("NodeGroups"):
                live[g["ReplicationGroupId"]] = g
        for gid in list(self.redis):
            if gid not in live:
                log(f"redis {gid}: group being deleted or gone, stopping redis-server")
                self.redis.pop(gid).stop()
        for gid in list(self.redis_errors):
            if gid not in live:
                del self.redis_errors[gid]
        for gid, g in live.items():
            # The group's parameter group, at start and whenever it (or
            # one of its parameters) changes. A failure is reported once
            # until it changes, and retried every round.
            try:
                parameter_group, params = redis_parameters(self.elasticache, g)
                # Its settings (moto_dataplane.py's): read every round, as
                # ModifyReplicationGroup may change its auth token.
                settings_path = self.state / "elasticache" / f"{gid}.json"
                settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
                if gid not in self.redis:
                    self.redis[gid] = Redis(self, g, settings, parameter_group, params)
                    r = self.redis[gid]
                    shown = " ".join(redis_conf_lines(params)) or "redis-server's defaults"
                    log(f"redis {gid}: redis-server on 127.0.0.1:{r.port} as {r.address} ({parameter_group}: {shown})")
                self.redis[gid].sync_auth(settings)
                self.redis[gid].sync(parameter_group, params)
                self.redis_errors.pop(gid, None)
            except Exception as e:  # noqa: BLE001 - reported once, retried next round
                self.report_once(self.redis_errors, gid, f"reconcile_redis: {gid}: {type(e).__name__}: {e}")

    def report_once(self, reported: dict[str, str], key: str, msg: str) -> None:
        """Logs and lists (status `errors`) the failure `msg` to serve `key`,
        unless it is the one last reported for it."""
        if reported.get(key) != msg:
            reported[key] = msg
            log(msg)
            self.errors = (self.errors + [msg])[-20:]

    def reconcile_memorydb(self) -> None:
        """A redis-server per available MemoryDB cluster (MemoryDB), with the
        users of the cluster's ACL as DescribeACLs and DescribeUsers say now
        (passwords from moto_dataplane.py's state files); stopped once the
        cluster is no longer available (being deleted, or gone). A failure is reported once until it changes, and
        retried every round."""
        pages = self.memorydb.get_paginator("describe_clusters").paginate(ShowShardDetails=True)
        live = {
            c["Name"]: c
            for page in pages
            for c in page.get("Clusters") or []
            if c.get("Status") == "available" and c.get("Shards") and (c.get("ClusterEndpoint") or {}).get("Address")
        }
        for name in list(self.memorydb_clusters):
            if name not in live:
                log(f"memorydb {name}: cluster being deleted or gone, stopping redis-server")
                self.memorydb_clusters.pop(name).stop()
        for name in list(self.memorydb_errors):
            if name not in live:
                del self.memorydb_errors[name]
        if not live:
            return
        paginate = self.memorydb.get_paginator
        acls = {a["Name"]: a for page in paginate("describe_acls").paginate() for a in page["ACLs"]}
        users = {u["Name"]: u for page in paginate("describe_users").paginate() for u in page["Users"]}
        for name, cluster in live.items():
            try:
                acl = acls.get(cluster.get("ACLName") or "")
                if acl is None:
                    raise RuntimeError(f"its ACL {cluster.get('ACLName')} is not described")
                rules = memorydb_acl_rules(self.state, acl, users)
                members = [u for u in acl.get("UserNames") or [] if u in rules]
                if name not in self.memorydb_clusters:
                    self.memorydb_clusters[name] = server = MemoryDB(self, cluster, rules)
                    log(f"memorydb {name}: redis-server on 127.0.0.1:{server.port} as {server.address} "
                        f"(tls {server.tls}, ACL {server.acl}: {', '.join(members) or 'no users'})")  # fmt: skip
                self.memorydb_clusters[name].sync(self, cluster, members, rules)
                self.memorydb_errors.pop(name, None)
            except Exception as e:  # noqa: BLE001 - reported once, retried next round
                self.report_once(self.memorydb_errors, name, f"reconcile_memorydb: {name}: {type(e).__name__}: {e}")

    def unserved(self) -> list[str]:
        """The ElastiCache groups and MemoryDB clusters moto has available
        that the data plane does not serve yet (no redis-server, or a
        MemoryDB one whose cluster state is not ok)."""
        groups = [
            f"ElastiCache {g['ReplicationGroupId']}"
            for g in self.elasticache.describe_replication_groups()["ReplicationGroups"]
            if g.get("Status") == "available" and g.get("NodeGroups") and g["ReplicationGroupId"] not in self.redis
        ]
        clusters = [
            f"MemoryDB {c['Name']}"
            for page in self.memorydb.get_paginator("describe_clusters").paginate()
            for c in page.get("Clusters") or []
            if c.get("Status") == "available"
            and not getattr(self.memorydb_clusters.get(c["Name"]), "ready", False)
        ]
        return groups + clusters

    def _taskdef(self, arn: str) -> dict:
        if arn not in self.taskdefs:
            self.taskdefs[arn] = self.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        return self.taskdefs[arn]

    def _service_aliases(self, svc: dict) -> list[str]:
        names = []
        for reg in svc.get("serviceRegistries") or []:
            service_id = reg["registryArn"].rsplit("/", 1)[-1]
            cm = self.cloudmap.get_service(Id=service_id)["Service"]
            ns = self.cloudmap.get_namespace(Id=cm["NamespaceId"])["Namespace"]
            names.append(f"{cm['Name']}.{ns['Name']}")
        return names

    def _secret(self, value_from: str) -> str:
        name = value_from
        if value_from.startswith("arn:") and ":parameter" in value_from:
            name = value_from.split(":parameter", 1)[1]
        return self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]

    def _pull(self, image: str) -> None:
        if image in self.pulled:
            return
        self.podman.run("pull", "--quiet", "--tls-verify=false", image)
        self.pulled.add(image)

    def _start_task(
        self, cluster: str, td: dict, svc: dict | None = None, task_arn: str = "", overrides: dict | None = None
    ) -> None:
        """Starts one task of `td`: for the service `svc`, or the one-off task
        `task_arn` (RunTask) with its container `overrides`. The first
        container is the task (its address, aliases and labels); the others
        join its network namespace as the task's sidecars."""
        first, *others = td["containerDefinitions"]
        for container in td["containerDefinitions"]:
            self._pull(container["image"])
        task_id = task_arn.rsplit("/", 1)[-1] if task_arn else uuid.uuid4().hex
        owner = svc["serviceName"] if svc else "run"
        ports = first.get("portMappings") or []
        port = ports[0]["containerPort"] if ports else 0
        network = ["--network", self.network]
        for alias in self._service_aliases(svc) if svc else []:
            network += ["--network-alias", alias]
        for name, ip in self.host_entries().items():
            network += ["--add-host", f"{name}:{ip}"]
        labels = [
            f"{LABEL}={self.name}", f"{LABEL}.cluster={cluster}",
            f"{LABEL}.service={svc['serviceName'] if svc else ''}",
            f"{LABEL}.taskdef={td['taskDefinitionArn']}", f"{LABEL}.task={task_arn or task_id}",
        ]  # fmt: skip
        main = self._run_container(
            first, overrides, task_id, f"{self.name}-{owner}-{task_id[:8]}", network,
            [*labels, f"{LABEL}.kind={'task' if svc else 'oneoff'}", f"{LABEL}.port={port}"],
        )  # fmt: skip
        for container in others:
            if container.get("essential", True):
                # None of the stack's task definitions has one; ECS would stop the task when it exits.
                log(f"ecs {owner}: container {container['name']} is essential; here only the first one is")
            self._run_container(
                container, overrides, task_id, f"{self.name}-{owner}-{task_id[:8]}-{container['name']}",
                ["--network", f"container:{main}"], [*labels, f"{LABEL}.kind=sidecar"],
            )  # fmt: skip
        log(f"ecs {owner}: started task {task_id[:8]} of {td['taskDefinitionArn'].rsplit('/', 1)[-1]}")

    def _run_container(
        self, container: dict, overrides: dict | None, task_id: str, name: str, network: list[str], labels: list[str]
    ) -> str:
        """Runs one container of a task as the ECS agent would: its
        environment with the `overrides` for its name, `secrets` from SSM,
        the platform's AWS environment, its awslogs stream. Returns its id."""
        override = next(
            (o for o in (overrides or {}).get("containerOverrides", []) if o.get("name") == container["name"]), {}
        )
        env = {e["name"]: e["value"] for e in container.get("environment") or []}
        env.update({e["name"]: e["value"] for e in override.get("environment") or []})
        for s in container.get("secrets") or []:
            env[s["name"]] = self._secret(s["valueFrom"])
        for item in self.container_aws_env():
            k, _, v = item.partition("=")
            env.setdefault(k, v)
        trust_volumes, trust_env = self.acm_trust()
        for k, v in trust_env.items():
            env.setdefault(k, v)
        env_file = self.state / "tmp" / f"env-{task_id}-{container['name']}"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        os.chmod(env_file, 0o600)
        args = [
            "run", "--detach", "--name", name, *network, "--env-file", str(env_file),
            "--volume", f"{self.ca.bundle}:{CA_BUNDLE}:ro",
            *(a for v in trust_volumes for a in ("--volume", v)),
            *(a for label in labels for a in ("--label", label)),
        ]  # fmt: skip
        logcfg = container.get("logConfiguration") or {}
        if logcfg.get("logDriver") == "awslogs":
            opts = logcfg.get("options") or {}
            stream = f"{opts.get('awslogs-stream-prefix', 'ecs')}/{container['name']}/{task_id}"
            args += ["--label", f"{LABEL}.awslogs-group={opts.get('awslogs-group', '')}",
                     "--label", f"{LABEL}.awslogs-stream={stream}"]  # fmt: skip
        if container.get("entryPoint"):
            args += ["--entrypoint", json.dumps(container["entryPoint"])]
        command = override.get("command") or container.get("command") or []
        try:
            return self.podman.run(*args, container["image"], *command).strip()
        finally:
            env_file.unlink(missing_ok=True)

    def reconcile_oneoff(self) -> None:
        """RunTask: each task moto lists as RUNNING that no service owns runs
        once; its state and exit code go back through DescribeTasks
        (moto_dataplane.py reads them from ecs-tasks/<id>.json) and StopTask."""
        rows = {
            (r.get("Labels") or {}).get(f"{LABEL}.task"): r
            for r in self.podman.containers()
            if (r.get("Labels") or {}).get(f"{LABEL}.kind") == "oneoff"
        }
        for cluster in self.ecs.list_clusters().get("clusterArns", []):
            arns = self.ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING").get("taskArns", [])
            for i in range(0, len(arns), 100):
                for task in self.ecs.describe_tasks(cluster=cluster, tasks=arns[i : i + 100])["tasks"]:
                    arn = task["taskArn"]
                    if task.get("group", "").startswith("service:") or arn in rows or arn in self.oneoff_done:
                        continue
                    try:
                        self._start_task(cluster, self._taskdef(task["taskDefinitionArn"]), task_arn=arn,
                                         overrides=task.get("overrides"))  # fmt: skip
                    except Exception as e:  # noqa: BLE001 - a pull, a secret, podman: all stop the task
                        # As ECS: the task stops without having run.
                        reason = f"CannotStartContainerError: {str(e)[-200:]}"
                        self._task_state(arn.rsplit("/", 1)[-1], {
                            "lastStatus": "STOPPED", "stopCode": "TaskFailedToStart", "stoppedReason": reason,
                        })  # fmt: skip
                        self.ecs.stop_task(cluster=cluster, task=arn, reason=reason)
                        self.oneoff_done.add(arn)
                        log(f"ecs run: task {arn.rsplit('/', 1)[-1][:8]} failed to start: {e}")
        for arn, row in rows.items():
            task_id = arn.rsplit("/", 1)[-1]
            labels = row.get("Labels") or {}
            if row.get("State") == "running":
                self._task_state(task_id, {"lastStatus": "RUNNING"})
                continue
            if arn in self.oneoff_done:
                # Removed a round after it stopped, once its log lines were shipped.
                self.podman.run("rm", "--force", "--depend", row["Id"], check=False)
                continue
            info = json.loads(self.podman.run("inspect", row["Id"]))[0]
            code = int(info["State"].get("ExitCode", -1))
            # Its output is in CloudWatch Logs before the task reads as stopped.
            self.ship_logs()
            if row["Id"] in self.shippers:
                self.shippers[row["Id"]].drain()
            reason = f"Essential container in task exited (exit code {code})"
            self._task_state(task_id, {
                "lastStatus": "STOPPED", "exitCode": code, "stopCode": "EssentialContainerExited",
                "stoppedReason": reason,
            })  # fmt: skip
            self.ecs.stop_task(cluster=labels.get(f"{LABEL}.cluster", ""), task=arn, reason=reason)
            self.oneoff_done.add(arn)
            log(f"ecs run: task {task_id[:8]} stopped, exit code {code}")

    def _task_state(self, task_id: str, state: dict) -> None:
        path = self.state / "ecs-tasks" / f"{task_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)

    def _healthy(self, task: Task, ips: dict[str, str]) -> bool:
        """As ECS judges a task: by its container health check when the task
        definition has one (run in the container, as the ECS agent does, at
        the check's interval), else by the container answering /health on its
        port. A task whose port does not answer yet is not checked: a check
        costs a `podman exec`, too dear to spend on a process still starting."""
        if not task.running:
            return False
        ip = ips.get(task.id)
        if task.port and ip:
            try:
                with urllib.request.urlopen(f"http://{ip}:{task.port}/health", timeout=1) as r:
                    if r.status != 200:
                        return False
            except OSError:
                return False
        try:
            container = self._taskdef(task.taskdef)["containerDefinitions"][0]
        except Exception:  # noqa: BLE001 - a deregistered revision: no check known
            container = {}
        check = container.get("healthCheck") or {}
        if not check.get("command"):
            return True
        now = time.monotonic()
        last = self.health_checked.get(task.id)
        if last and last[1] and now - last[0] < check.get("interval", 30):
            return True
        command = check["command"]
        argv = ["/bin/sh", "-c", command[1]] if command[0] == "CMD-SHELL" else command[1:]
        healthy = self.podman.succeeds("exec", task.id, *argv)
        if last is None or last[1] != healthy:
            log(f"ecs {task.service}: task {task.id[:8]} health check {'passed' if healthy else 'failed'}")
        self.health_checked[task.id] = (now, healthy)
        return healthy

    def _ips(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        out = json.loads(self.podman.run("inspect", *ids, check=False) or "[]")
        ips = {}
        for c in out:
            nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
            net = nets.get(self.network) or {}
            if net.get("IPAddress"):
                ips[c["Id"]] = net["IPAddress"]
        return ips

    def reconcile_ecs(self) -> None:
        rows = [r for r in self.podman.containers() if (r.get("Labels") or {}).get(f"{LABEL}.kind") == "task"]
        tasks = [Task(r) for r in rows]
        wanted: set[str] = set()
        for cluster in self.ecs.list_clusters().get("clusterArns", []):
            arns = []
            for page in self.ecs.get_paginator("list_services").paginate(cluster=cluster):
                arns += page["serviceArns"]
            for i in range(0, len(arns), 10):
                for svc in self.ecs.describe_services(cluster=cluster, services=arns[i : i + 10])["services"]:
                    if svc.get("status") != "ACTIVE":
                        continue
                    key = svc["serviceName"]
                    wanted.add(key)
                    self._converge_service(cluster, svc, [t for t in tasks if t.service == key])
        stale = [t.id for t in tasks if t.service not in wanted]
        if stale:
            log(f"ecs: removing {len(stale)} task(s) of deleted services")
            self.podman.run("rm", "--force", "--depend", "--time", "0", *stale, check=False)
        self._sync_service_forwarders(wanted)

    def _converge_service(self, cluster: str, svc: dict, tasks: list[Task]) -> None:
        name = svc["serviceName"]
        for lb in svc.get("loadBalancers") or []:
            users = self.service_lbs.setdefault(lb["targetGroupArn"], [])
            if name not in users:
                users.append(name)
        desired = svc.get("desiredCount", 0)
        td = self._taskdef(svc["taskDefinition"])
        arn = td["taskDefinitionArn"]
        exited = [t for t in tasks if not t.running]
        if exited:
            # ECS replaces a task whose essential container stopped.
            self.replaced[name] = self.replaced.get(name, 0) + len(exited)
            log(f"ecs {name}: {len(exited)} task(s) stopped, replacing")
            self.podman.run("rm", "--force", "--depend", "--time", "0", *[t.id for t in exited], check=False)
        current = [t for t in tasks if t.running and t.taskdef == arn]
        old = [t for t in tasks if t.running and t.taskdef != arn]
        for _ in range(max(0, desired - len(current))):
            self._start_task(cluster, td, svc=svc)
        if len(current) > desired:
            extra = sorted(current, key=lambda t: t.created, reverse=True)[: len(current) - desired]
            log(f"ecs {name}: scaling in by {len(extra)}")
            self.podman.run("stop", "--time", "10", *[t.id for t in extra], check=False)
            self.podman.run("rm", "--force", "--depend", *[t.id for t in extra], check=False)
            current = [t for t in current if t not in extra]
        ips = self._ips([t.id for t in current + old])
        passing = [t for t in current if self._healthy(t, ips)]
        healthy = len(passing)
        if old and healthy >= desired:
            log(f"ecs {name}: new tasks healthy, stopping {len(old)} of the previous task definition")
            self.podman.run("stop", "--time", "10", *[t.id for t in old], check=False)
            self.podman.run("rm", "--force", "--depend", *[t.id for t in old], check=False)
            old = []
        # Where the service's loopback forwarder sends connections until the next round.
        self.targets[name] = [(ips[t.id], t.port) for t in current + old if t.port and t.id in ips]
        for lb in svc.get("loadBalancers") or []:
            registered = [(ips[t.id], lb.get("containerPort") or t.port) for t in passing + old if t.id in ips]
            try:
                self._sync_targets(lb["targetGroupArn"], registered)
            except Exception as e:  # noqa: BLE001 - a target group being deleted: the next round sees it gone
                log(f"elb: cannot sync the targets of {name}: {type(e).__name__}: {e}")
        # What DescribeServices reports (moto_dataplane.py reads it back).
        observed: dict[str, dict[str, int]] = {arn: {"running": len(current), "healthy": healthy}}
        for t in old:
            counts = observed.setdefault(t.taskdef, {"running": 0, "healthy": 0})
            counts["running"] += 1
            counts["healthy"] += 1
        path = self.state / "ecs" / cluster.rsplit("/", 1)[-1] / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"task_definitions": observed}))
        tmp.replace(path)

    def _sync_targets(self, group: str, wanted: list[tuple[str, int]]) -> None:
        """ECS's part of a load balancer: the service's tasks that pass their
        health check (and those of an older task definition until they stop)
        are the registered targets of its target group, by IP and port; the
        others are deregistered. moto reports every registered target
        healthy, so DescribeTargetHealth answers what the load balancer's
        health check would."""
        described = self.elbv2.describe_target_health(TargetGroupArn=group)
        have = {(d["Target"]["Id"], d["Target"].get("Port")) for d in described.get("TargetHealthDescriptions", [])}
        want = set(wanted)
        if want - have:
            self.elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": i, "Port": p} for i, p in want - have])
            log(f"elb: registered {sorted(want - have)} in {group.rsplit('/', 2)[-2]}")
        if have - want:
            self.elbv2.deregister_targets(TargetGroupArn=group, Targets=[{"Id": i, "Port": p} for i, p in have - want])
            log(f"elb: deregistered {sorted(have - want)} from {group.rsplit('/', 2)[-2]}")

    def reconcile_certificates(self) -> None:
        """The region's ISSUED ACM certificates: their certificates and chains
        make the bundle containers trust (acm-trust/ca-bundle.pem, the data
        plane's own bundle first)."""
        summaries = []
        for page in self.acm.get_paginator("list_certificates").paginate(
            CertificateStatuses=["ISSUED"], Includes={"keyTypes": ACM_KEY_TYPES}
        ):
            summaries += page.get("CertificateSummaryList", [])
        certs = {}
        for summary in summaries:
            arn = summary["CertificateArn"]
            stamp = f"{summary.get('ImportedAt') or summary.get('IssuedAt') or ''} {summary.get('NotAfter') or ''}"
            known = self.acm_certs.get(arn)
            if known and known[0] == stamp:
                certs[arn] = known
                continue
            got = self.acm.get_certificate(CertificateArn=arn)
            certs[arn] = (stamp, got["Certificate"], got.get("CertificateChain") or "")
            log(f"acm: {summary.get('DomainName', arn)} trusted by containers from now on")
        changed = certs != self.acm_certs
        self.acm_certs = certs
        path = self.acm_trust_dir / "ca-bundle.pem"
        if (not changed and path.exists()) or (not certs and not path.exists()):
            return
        pems = [self.ca.bundle.read_text()]
        for arn in sorted(certs):
            pems += [certs[arn][1], certs[arn][2]]
        self.acm_trust_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(p.strip() + "\n" for p in pems if p.strip()))
        tmp.replace(path)

    def _listener_certificate(self, arn: str) -> dict | None:
        """The files an HTTPS listener serves for the ACM certificate `arn`:
        the certificate and its chain, and its private key, exported from ACM
        (ExportCertificate, key encrypted with the data plane's passphrase)
        and decrypted. Exported again when the certificate changes (a
        reimport); None while it cannot be exported."""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - moto's venv has it

        current = self.acm_certs.get(arn)
        known = self.listener_certs.get(arn)
        if known and (current is None or current[1] == known[0]):
            return {"cert": str(known[1]), "key": str(known[2])}
        try:
            out = self.acm.export_certificate(CertificateArn=arn, Passphrase=self.acm_passphrase.encode())
        except Exception as e:  # noqa: BLE001 - the listener refuses TLS until it can be exported
            if arn not in self.cert_errors:
                self.cert_errors.add(arn)
                log(f"elb: cannot export the listener certificate {arn}: {type(e).__name__}: {e}")
            return None
        self.cert_errors.discard(arn)
        key = serialization.load_pem_private_key(out["PrivateKey"].encode(), self.acm_passphrase.encode())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        folder = self.state / "lb" / "certs" / hashlib.sha256(arn.encode()).hexdigest()[:16]
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        cert_path, key_path = folder / "cert.pem", folder / "key.pem"
        tmp = folder / "key.tmp"
        tmp.unlink(missing_ok=True)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(key_pem)
        tmp.replace(key_path)
        tmp = folder / "cert.tmp"
        chain = out.get("CertificateChain") or ""
        tmp.write_text(out["Certificate"].strip() + "\n" + (chain.strip() + "\n" if chain.strip() else ""))
        tmp.replace(cert_path)
        self.listener_certs[arn] = (out["Certificate"], cert_path, key_path)
        log(f"elb: listener certificate {arn.rsplit('/', 1)[-1]} exported from ACM")
        return {"cert": str(cert_path), "key": str(key_path)}

    def _http_listener_config(self, listener: dict, groups: dict[str, list[tuple[str, int]]]) -> dict:
        """What an HTTP or HTTPS listener's proxy (alb.py) serves by: its
        protocol and certificate, its rules by priority, its default actions
        and the registered targets of every target group they forward to."""
        rules, marker = [], None
        while True:
            page = self.elbv2.describe_rules(ListenerArn=listener["ListenerArn"], **({"Marker": marker} if marker else {}))
            rules += page.get("Rules", [])
            marker = page.get("NextMarker")
            if not marker:
                break
        rules = sorted(
            ({"priority": int(r["Priority"]), "conditions": r.get("Conditions") or [], "actions": r.get("Actions") or []}
             for r in rules if not r.get("IsDefault") and str(r.get("Priority", "")).isdigit()),
            key=lambda r: r["priority"],
        )  # fmt: skip
        default_actions = listener.get("DefaultActions") or []
        arns = set()
        for action in default_actions + [a for r in rules for a in r["actions"]]:
            if action.get("Type") != "forward":
                continue
            if action.get("TargetGroupArn"):
                arns.add(action["TargetGroupArn"])
            for g in (action.get("ForwardConfig") or {}).get("TargetGroups") or []:
                arns.add(g["TargetGroupArn"])
        for arn in arns - groups.keys():
            groups[arn] = self._registered_targets(arn)
        certificate = None
        if listener.get("Protocol") == "HTTPS":
            default = next(iter(listener.get("Certificates") or []), {}).get("CertificateArn")
            certificate = self._listener_certificate(default) if default else None
        return {
            "protocol": listener.get("Protocol"),
            "port": listener["Port"],
            "ssl_policy": listener.get("SslPolicy"),
            "certificate": certificate,
            "rules": rules,
            "default_actions": default_actions,
            "target_groups": {arn: groups[arn] for arn in sorted(arns)},
        }

    def _registered_targets(self, group: str) -> list[tuple[str, int]]:
        """A target group's targets an application load balancer routes to:
        the registered ones by IP that are healthy (all of them if none is,
        as ELB fails open)."""
        try:
            described = self.elbv2.describe_target_health(TargetGroupArn=group).get("TargetHealthDescriptions", [])
        except self.elbv2.exceptions.TargetGroupNotFoundException:
            return []
        port = None
        found = []
        for d in described:
            target, state = d["Target"], (d.get("TargetHealth") or {}).get("State")
            if state in ("draining", "unused"):
                continue
            if target.get("Port") is None and port is None:
                port = self.elbv2.describe_target_groups(TargetGroupArns=[group])["TargetGroups"][0].get("Port")
            try:
                socket.inet_aton(target["Id"])
            except OSError:
                continue  # an instance or Lambda target: none of those run here
            found.append(((target["Id"], int(target.get("Port") or port or 80)), state == "healthy"))
        healthy = [t for t, ok in found if ok]
        return healthy or [t for t, _ in found]

    def reconcile_lbs(self) -> None:
        """Each listener of each load balancer: a process in the router's
        network namespace (the address the load balancer's DNS name resolves
        to in the VPC) on the listener's port. A TCP listener forwards to the
        running tasks of the services registered in its target group; an
        HTTP or HTTPS one is an HTTP proxy that routes by the listener's rules."""
        wanted: dict[tuple[str, int], tuple[str, str | None, dict]] = {}
        for lb in self.elbv2.describe_load_balancers().get("LoadBalancers", []):
            for listener in self.elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"]).get("Listeners", []):
                group = next((a.get("TargetGroupArn") for a in listener.get("DefaultActions", [])
                              if a.get("Type") == "forward"), None)  # fmt: skip
                wanted[(lb["LoadBalancerArn"], listener["Port"])] = (lb["DNSName"], group, listener)
        for key in [k for k in self.lb_listeners if k not in wanted]:
            log(f"elb: listener {key[1]} of {key[0].rsplit('/', 2)[-2]} removed")
            self.lb_listeners.pop(key).terminate()
            self.lb_modes.pop(key, None)
            self.lb_configs.pop(key, None)
        (self.state / "lb").mkdir(exist_ok=True)
        # Target group ARN -> its registered targets, asked once a round.
        groups: dict[str, list[tuple[str, int]]] = {}
        for (arn, port), (_, group, listener) in wanted.items():
            slug = f"{arn.rsplit('/', 1)[-1]}-{port}"
            path = self.state / "lb" / f"{slug}.json"
            http = listener.get("Protocol") in ("HTTP", "HTTPS")
            if http:
                config = json.dumps(self._http_listener_config(listener, groups), indent=1)
                if self.lb_configs.get((arn, port)) != config or not path.exists():
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(config)
                    tmp.replace(path)
                    self.lb_configs[(arn, port)] = config
            else:
                targets = [t for svc in self.service_lbs.get(group or "", []) for t in self.targets.get(svc, [])]
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(targets))
                tmp.replace(path)
            mode = "http" if http else "tcp"
            proc = self.lb_listeners.get((arn, port))
            if proc is not None and self.lb_modes.get((arn, port)) != mode:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                proc = None
            if proc is None or proc.poll() is not None:
                if http:
                    with open(self.state / "lb" / f"{slug}.log", "ab") as out:
                        proc = subprocess.Popen(
                            ["nsenter", f"--net=/proc/{self.router_pid}/ns/net",
                             sys.executable, str(HERE / "lb_forward.py"), "--http", str(port), str(path)],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                        )  # fmt: skip
                else:
                    proc = subprocess.Popen(
                        ["nsenter", f"--net=/proc/{self.router_pid}/ns/net",
                         sys.executable, str(HERE / "lb_forward.py"), str(port), str(path)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                    )  # fmt: skip
                self.lb_listeners[(arn, port)] = proc
                self.lb_modes[(arn, port)] = mode
                (self.state / "lb" / f"{slug}.pid").write_text(str(proc.pid))
                log(f"elb: listener {listener.get('Protocol', '')} {port} of {arn.rsplit('/', 2)[-2]} at {self.router_ip}")
        self.lb_names = {dns for dns, _, _ in wanted.values()}
        self.lb_status = [
            {"arn": arn, "dns_name": dns, "address": self.router_ip, "port": port, "protocol": listener.get("Protocol")}
            for (arn, port), (dns, _, listener) in sorted(wanted.items())
        ]

    def _sync_service_forwarders(self, services: set[str]) -> None:
        for name in list(self.service_forwarders):
            if name not in services:
                self.service_forwarders.pop(name).close()
                self.targets.pop(name, None)
        for name in services:
            if name not in self.service_forwarders:
                self.service_forwarders[name] = Forwarder(
                    ("127.0.0.1", 0), lambda name=name: self.targets.get(name, []), f"service {name}"
                )

    def reconcile_instances(self) -> None:
        wanted: dict[str, tuple[str, dict]] = {}
        for page in self.asg.get_paginator("describe_auto_scaling_groups").paginate():
            for group in page["AutoScalingGroups"]:
                for inst in group.get("Instances", []):
                    if inst.get("LifecycleState") == "InService":
                        lt = inst.get("LaunchTemplate") or group.get("LaunchTemplate") or {}
                        wanted[inst["InstanceId"]] = (group["AutoScalingGroupName"], lt)
        for iid in list(self.instances):
            if iid not in wanted:
                log(f"ec2 {iid}: terminated, stopping its containers")
                # As an EC2 shutdown stops Docker: SIGTERM to each
                # container, then its stop timeout before SIGKILL, so an
                # executor finishes what it leased.
                self.instances.pop(iid).stop(self.podman, graceful=True)
        # A host's /etc/hosts (the VPC's DNS) is written when it boots: an
        # ElastiCache group or MemoryDB cluster that became available since
        # this round's reconcile_redis or reconcile_memorydb is served first
        # (for a MemoryDB cluster: until its cluster state is ok, its names
        # are not all known), or the host could never resolve its names.
        # Asked only when an instance is to boot.
        unserved = self.unserved() if any(iid not in self.instances for iid in wanted) else []
        for iid, (group, lt) in wanted.items():
            if iid in self.instances:
                self.instances[iid].restart_exited()
                continue
            if unserved:
                if iid not in self.boot_waits:
                    self.boot_waits.add(iid)
                    log(f"ec2 {iid}: boots once these are served (their DNS names): {', '.join(unserved)}")
                continue
            versions = self.ec2.describe_launch_template_versions(
                LaunchTemplateId=lt["LaunchTemplateId"], Versions=[str(lt.get("Version", "$Latest"))]
            )["LaunchTemplateVersions"]
            data = versions[0]["LaunchTemplateData"].get("UserData", "")
            user_data = base64.b64decode(data).decode() if data else "#!/bin/bash\n"
            described = self.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
            hostname = described[0]["Instances"][0].get("PrivateDnsName") or iid
            log(f"ec2 {iid}: booting ({group}, launch template version {versions[0]['VersionNumber']})")
            self.instances[iid] = Instance(self, iid, group, user_data, hostname)

    def engines(self) -> list[tuple[Podman, Instance | None]]:
        """Every container engine: the ECS one and each instance's own."""
        return [(self.podman, None), *((i.podman, i) for i in self.instances.values())]

    def ship_logs(self) -> None:
        for podman, _ in self.engines():
            for row in podman.containers():
                labels = row.get("Labels") or {}
                group = labels.get(f"{LABEL}.awslogs-group")
                if not group:
                    continue
                cid = row["Id"]
                if cid not in self.shippers:
                    stream = labels.get(f"{LABEL}.awslogs-stream", cid[:12])
                    self.shippers[cid] = LogShipper(self, podman, cid, group, stream)

    def signal(self, container: str, action: str) -> bool:
        """`kill` (SIGKILL), `pause` or `unpause` a container of any engine, by
        name or id: crashes and hung processes for the tests."""
        args = {"kill": ["kill", "--signal", "KILL"], "pause": ["pause"], "unpause": ["unpause"]}[action]
        with self.lock:
            for podman, _ in self.engines():
                for row in podman.containers():
                    if container in (row["Id"], row["Names"][0]):
                        podman.run(*args, row["Id"])
                        return True
        return False

    # ----- status

    def status(self) -> dict:
        with self.lock:
            containers = []
            for podman, instance in self.engines():
                rows = podman.containers()
                ips = self._ips([r["Id"] for r in rows]) if instance is None else {}
                for r in rows:
                    labels = r.get("Labels") or {}
                    kind = labels.get(f"{LABEL}.kind") or "container"
                    if kind == "router":
                        continue
                    containers.append({
                        "id": r["Id"],
                        "name": r["Names"][0],
                        "kind": kind,
                        "state": r.get("State"),
                        "image": r.get("Image"),
                        "ip": ips.get(r["Id"]),
                        "service": labels.get(f"{LABEL}.service"),
                        "task_definition": labels.get(f"{LABEL}.taskdef"),
                        "instance": instance.id if instance else labels.get(f"{LABEL}.instance"),
                        "log_group": labels.get(f"{LABEL}.awslogs-group"),
                        "log_stream": labels.get(f"{LABEL}.awslogs-stream"),
                    })  # fmt: skip
            return {
                "name": self.name,
                "network": self.network,
                "gateway": self.gateway,
                "step_image": self.step_image,
                "containers": containers,
                "instances": [i.status() for i in self.instances.values()],
                "redis": [
                    {
                        "id": r.id, "address": r.address, "port": r.port, "tls": r.tls,
                        "parameter_group": r.parameter_group, "maxmemory_policy": r.maxmemory_policy,
                    }  # fmt: skip
                    for r in self.redis.values()
                ],
                "memorydb": [
                    {
                        "name": m.name, "address": m.address, "nodes": m.nodes, "port": m.port,
                        "endpoint_port": m.endpoint_port, "tls": m.tls, "acl": m.acl, "users": m.users,
                    }  # fmt: skip
                    for m in self.memorydb_clusters.values()
                    if m.ready
                ],
                "services": {
                    name: f"127.0.0.1:{f.address[1]}" for name, f in self.service_forwarders.items()
                },
                "load_balancers": self.lb_status,
                "replaced": self.replaced,
                "errors": self.errors,
            }


def cleanup(state: Path, network: str | None) -> None:
    """What a killed data plane may have left behind under `state`: the
    instances' process groups, the load balancers' listeners, containers of
    every engine, the network and the redis-servers of ElastiCache and
    MemoryDB (their pids are recorded next to them)."""
    pid_files = [*state.glob("i/*/pid"), *state.glob("redis/*/pid"), *state.glob("memorydb/clusters/*/pid")]
    for pid_file in [*pid_files, *state.glob("lb/*.pid")]:
        try:
            pid = int(pid_file.read_text())
            # Instances and listeners run in sessions of their own; redis-server alone.
            if pid_file.parent.parent.name == "i" or pid_file.parent.name == "lb":
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    for conf in [*state.glob("i/*/containers.conf"), state / "containers.conf"]:
        if conf.exists():
            Podman(conf.parent).remove_all()
    if network and (state / "containers.conf").exists():
        Podman(state).run("network", "rm", "--force", network, check=False)


def serve_status(plane: Dataplane) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path != "/status":
                self.send_error(404)
                return
            body = json.dumps(plane.status()).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            parts = self.path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "containers" and parts[2] in ("kill", "pause", "unpause"):
                found = plane.signal(parts[1], parts[2])
                self.send_response(204 if found else 404)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True, help="moto's endpoint, http://127.0.0.1:PORT")
    p.add_argument("--registry", required=True, help="HOST:PORT of the registry ECR URIs map onto")
    p.add_argument("--state-dir", required=True, help="podman storage, instance dirs, logs")
    p.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    p.add_argument("--name", help="prefix of every container and network (default: random)")
    p.add_argument("--forward", type=int, action="append", default=[],
                   help="a loopback port containers reach at the gateway address (repeatable)")  # fmt: skip
    p.add_argument("--otel-collector", metavar="IMAGE=PORT",
                   help=f"serve IMAGE ({PUBLIC_ECR}/...) as a collector stand-in relaying OTLP/HTTP to loopback PORT")  # fmt: skip
    p.add_argument("--cleanup", action="store_true",
                   help="remove what a killed data plane left under --state-dir (with --name: its network), then exit")  # fmt: skip
    args = p.parse_args()
    if args.cleanup:
        cleanup(Path(args.state_dir), f"{args.name}-vpc" if args.name else None)
        return 0
    plane = Dataplane(args)

    def stop(*_: object) -> None:
        plane.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        plane.setup()
        server = serve_status(plane)
        print(f"dataplane ready: http://127.0.0.1:{server.server_address[1]} gateway {plane.gateway}", flush=True)
        plane.loop()
    finally:
        plane.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
