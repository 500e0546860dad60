"""moto's server with the transitions AWS finishes by itself and moto never does.

Started instead of `moto_server` (same arguments) by the AWS data plane of the
test harness. What it changes, and only that:

- ElastiCache replication groups: a delete goes from `deleting` to gone after
  DATAPLANE_DELETE_SECONDS (AWS takes minutes; moto never finishes it).
- ElastiCache `DeleteCacheSubnetGroup`, which moto does not implement (HTTP
  500): deletes the group, refused while a replication group uses it, as AWS does.
- ECS services report what really runs: the data plane writes, per
  service, how many of its containers run (and pass their health check) on
  each task definition to $DATAPLANE_STATE_DIR/ecs/<cluster>/<service>.json,
  and DescribeServices answers runningCount, pendingCount and deployments
  (PRIMARY with rolloutState, ACTIVE for older task definitions still
  running) from it, instead of moto's fixed MOTO_ECS_SERVICE_RUNNING.
- One-off ECS tasks (RunTask) report what their container did: the data
  plane writes its state and exit code to $DATAPLANE_STATE_DIR/ecs-tasks/<id>.json
  and stops the task with StopTask; DescribeTasks answers lastStatus,
  stopCode and the container's exitCode from it. moto's own progression of
  task states on every describe is turned off.
- A task's containers describe `cpu` and `memory` as strings, as ECS does
  (moto copies the task definition's numbers, which typed SDKs refuse).
- Every replication group's data-plane settings (auth token, TLS, port) are
  written to $DATAPLANE_STATE_DIR/elasticache/<id>.json at creation, so the
  data plane can run a real redis-server that answers as the group would.
  AWS keeps the auth token too; moto only remembers that one was given.
- Everything of `moto_plus.py` (Auto Scaling instance refreshes and the
  launch template version of each instance), which the moto of every test has.
"""

import json
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import moto_plus  # noqa: E402,F401  (the patches every test's moto has)
from moto.core.responses import EmptyResult
from moto.core.utils import utcnow
from moto.ecs import models as ecs_models
from moto.elasticache import models, responses
from moto.elasticache.exceptions import CacheSubnetGroupNotFound, ElastiCacheException
from moto.moto_api import state_manager
from moto.server import main

STATE_DIR = Path(os.environ.get("DATAPLANE_STATE_DIR", "."))
DELETE_SECONDS = float(os.environ.get("DATAPLANE_DELETE_SECONDS", "1"))


class CacheSubnetGroupInUse(ElastiCacheException):
    code = "CacheSubnetGroupInUse"

    def __init__(self, name: str):
        super().__init__(f"Cache subnet group {name} is currently in use by a cache cluster.")


_original_init = models.ReplicationGroup.__init__


def _init(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    record = {
        "id": self.replication_group_id,
        "auth_token": kwargs.get("auth_token"),
        "transit_encryption": bool(kwargs.get("transit_encryption_enabled")),
        "port": self.port,
    }
    out = STATE_DIR / "elasticache"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{record['id']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


_original_delete = models.ElastiCacheBackend.delete_replication_group


def _delete_replication_group(self, replication_group_id, retain_primary_cluster):
    group = _original_delete(self, replication_group_id, retain_primary_cluster)

    def finish():
        self.replication_groups.pop(replication_group_id, None)

    threading.Timer(DELETE_SECONDS, finish).start()
    return group


def _delete_cache_subnet_group(self):
    name = self._get_param("CacheSubnetGroupName")
    backend = self.elasticache_backend
    if name not in backend.cache_subnet_groups:
        raise CacheSubnetGroupNotFound(name)
    for group in backend.replication_groups.values():
        if group.cache_subnet_group_name == name:
            raise CacheSubnetGroupInUse(name)
    del backend.cache_subnet_groups[name]
    return EmptyResult()


_original_describe_services = ecs_models.EC2ContainerServiceBackend.describe_services


def _observed(service) -> dict:
    path = STATE_DIR / "ecs" / service.cluster_name / f"{service.name}.json"
    try:
        return json.loads(path.read_text()).get("task_definitions", {})
    except (OSError, ValueError):
        return {}


def _describe_services(self, cluster_str, service_names_or_arns):
    services, failures = _original_describe_services(self, cluster_str, service_names_or_arns)
    for service in services:
        observed = _observed(service)
        current = observed.get(service.task_definition, {})
        healthy = int(current.get("healthy", 0))
        older = {td: c for td, c in observed.items() if td != service.task_definition and c.get("running")}
        service.running_count = sum(int(c.get("running", 0)) for c in observed.values())
        service.pending_count = max(service.desired_count - healthy, 0)
        primary = dict(service.deployments[0]) if service.deployments else {}
        done = healthy >= service.desired_count and not older
        primary.update(
            id=primary.get("id") or f"ecs-svc/{abs(hash(service.arn)) % 10**12}",
            status="PRIMARY",
            taskDefinition=service.task_definition,
            desiredCount=service.desired_count,
            runningCount=healthy,
            pendingCount=service.pending_count,
            rolloutState="COMPLETED" if done else "IN_PROGRESS",
            rolloutStateReason="ECS deployment completed." if done else "ECS deployment in progress.",
            updatedAt=utcnow(),
        )
        deployments = [primary]
        for td, counts in older.items():
            deployments.append({
                "id": f"ecs-svc/{abs(hash(td)) % 10**12}",
                "status": "ACTIVE",
                "taskDefinition": td,
                "desiredCount": 0,
                "runningCount": int(counts.get("running", 0)),
                "pendingCount": 0,
                "launchType": primary.get("launchType"),
                "createdAt": primary.get("createdAt", utcnow()),
                "updatedAt": utcnow(),
            })  # fmt: skip
        service.deployments = deployments
    return services, failures


ecs_models.EC2ContainerServiceBackend.describe_services = _describe_services

_original_describe_tasks = ecs_models.EC2ContainerServiceBackend.describe_tasks


def _describe_tasks(self, *args, **kwargs):
    tasks = _original_describe_tasks(self, *args, **kwargs)
    for task in tasks:
        try:
            state = json.loads((STATE_DIR / "ecs-tasks" / f"{task.id}.json").read_text())
        except (OSError, ValueError):
            continue
        task.status = state["lastStatus"]
        for container in task.containers:
            container.last_status = state["lastStatus"]
            if "exitCode" in state:
                container.exitCode = state["exitCode"]
        if "stopCode" in state:
            task.stop_code = state["stopCode"]
            task.stopped_reason = state["stoppedReason"]
    return tasks


ecs_models.EC2ContainerServiceBackend.describe_tasks = _describe_tasks

_original_container_init = ecs_models.Container.__init__


def _container_init(self, *args, **kwargs):
    _original_container_init(self, *args, **kwargs)
    for field in ("cpu", "memory"):
        value = getattr(self, field, None)
        if value is not None:
            setattr(self, field, str(value))


ecs_models.Container.__init__ = _container_init

# Task states move only when the data plane says so.
state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
models.ReplicationGroup.__init__ = _init
models.ElastiCacheBackend.delete_replication_group = _delete_replication_group
responses.ElastiCacheResponse.delete_cache_subnet_group = _delete_cache_subnet_group

if __name__ == "__main__":
    sys.exit(main())
