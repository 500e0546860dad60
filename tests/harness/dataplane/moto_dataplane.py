"""moto's server with the transitions AWS finishes by itself and moto never does.

Started instead of `moto_server` (same arguments) by the AWS data plane of the
test harness. What it changes, and only that:

- ElastiCache replication groups: a delete goes from `deleting` to gone after
  DATAPLANE_DELETE_SECONDS (AWS takes minutes; moto never finishes it).
- MemoryDB clusters: DeleteCluster leaves the cluster `deleting` (moto
  dropped it at once), gone DATAPLANE_DELETE_SECONDS later (AWS takes
  minutes). Meanwhile, as on AWS, it still holds its name, its ACL (DeleteACL:
  InvalidACLStateFault; the ACL's Clusters still list it) and its subnet group
  (DeleteSubnetGroup: SubnetGroupInUseFault), and DeleteCluster and
  UpdateCluster of it are refused with InvalidClusterStateFault. The data
  plane serves `available` clusters only: a deleting one is no longer served.
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
- Every replication group's data-plane settings are written to
  $DATAPLANE_STATE_DIR/elasticache/<id>.json (mode 0600, replaced
  atomically) at creation and again when ModifyReplicationGroup (moto_plus.py's)
  changes its auth token, so the data plane can run a real redis-server that
  answers as the group would: `id`, `transit_encryption`, `port`,
  `auth_token` (the newest token, null for none) and `auth_tokens` (the
  tokens the group accepts, newest first; null in it when connecting without
  a token is accepted). As on AWS, ROTATE (AuthTokenUpdateStrategy's default)
  adds the new token and keeps the previous one (or no token, for a group
  that had none) accepted; SET accepts the new token only; DELETE none (no
  AUTH needed). AWS keeps the auth tokens too; moto only remembers that one
  was given.
- Every MemoryDB user's passwords and access string are written to
  $DATAPLANE_STATE_DIR/memorydb/users/<name>.json (`name`,
  `authentication`, `passwords`, `access_string`; mode 0600, replaced
  atomically) at CreateUser and UpdateUser, and removed at DeleteUser, so
  the data plane's redis-server of each MemoryDB cluster lets the users of
  its ACL in with their passwords. AWS keeps the passwords too (moto_plus.py's
  users do); DescribeUsers never answers them.
- Everything of `moto_plus.py` (Auto Scaling instance refreshes and the
  launch template version of each instance), which the moto of every test has.
"""

import json
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import moto_plus  # noqa: E402  (the patches every test's moto has)
from moto.core.responses import EmptyResult
from moto.core.utils import utcnow
from moto.ecs import models as ecs_models
from moto.elasticache import models, responses
from moto.elasticache.exceptions import CacheSubnetGroupNotFound, ElastiCacheException
from moto.memorydb import models as memorydb_models
from moto.memorydb.responses import MemoryDBResponse
from moto.moto_api import state_manager
from moto.server import main

STATE_DIR = Path(os.environ.get("DATAPLANE_STATE_DIR", "."))
DELETE_SECONDS = float(os.environ.get("DATAPLANE_DELETE_SECONDS", "1"))


class CacheSubnetGroupInUse(ElastiCacheException):
    code = "CacheSubnetGroupInUse"

    def __init__(self, name: str):
        super().__init__(f"Cache subnet group {name} is currently in use by a cache cluster.")


class InvalidClusterStateFault(moto_plus.MemoryDBFault):
    pass


def _gone_later(registry: dict, key: str, resource) -> None:
    """Finishes a delete as AWS does by itself: `resource`, which answers
    `deleting` meanwhile, leaves `registry` (its backend's dict, by `key`)
    DATAPLANE_DELETE_SECONDS from now."""

    def finish():
        if registry.get(key) is resource:
            registry.pop(key, None)

    timer = threading.Timer(DELETE_SECONDS, finish)
    timer.daemon = True
    timer.start()


_original_init = models.ReplicationGroup.__init__


def _write_secret(path: Path, record: dict) -> None:
    """Writes `record` (it holds secrets) to `path` as JSON: readable by its
    owner only from the start, and replaced atomically, so the data plane
    never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(record))
    tmp.replace(path)


def _write_group_settings(group) -> None:
    """The replication group's data-plane settings file, as the group now is."""
    tokens = list(group.dataplane_auth_tokens)
    record = {
        "id": group.replication_group_id,
        "auth_token": tokens[0] if tokens else None,
        "auth_tokens": tokens,
        "transit_encryption": bool(group.transit_encryption_enabled),
        "port": group.port,
    }
    _write_secret(STATE_DIR / "elasticache" / f"{record['id']}.json", record)


def _init(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    # The tokens the group accepts, newest first; None: no token needed.
    self.dataplane_auth_tokens = [kwargs.get("auth_token") or None]
    _write_group_settings(self)


_original_modify_replication_group = responses.ElastiCacheResponse.modify_replication_group


def _modify_replication_group(self):
    """ModifyReplicationGroup (moto_plus.py's), then the tokens the group
    accepts after an AuthToken change, written to its settings file; nothing
    is written when the call is refused."""
    result = _original_modify_replication_group(self)
    token = self._get_param("AuthToken") or None
    # moto_plus.py's reading of it: ROTATE unless given, when a token is.
    strategy = (self._get_param("AuthTokenUpdateStrategy") or ("ROTATE" if token else "")).upper()
    if strategy:
        group = self.elasticache_backend.replication_groups[self._get_param("ReplicationGroupId")]
        if strategy == "ROTATE":
            # The new token, and the previous one (or none) still accepted.
            previous = group.dataplane_auth_tokens[0] if group.dataplane_auth_tokens else None
            group.dataplane_auth_tokens = [token] + ([previous] if previous != token else [])
        elif strategy == "SET":
            group.dataplane_auth_tokens = [token]
        else:  # DELETE
            group.dataplane_auth_tokens = [None]
        _write_group_settings(group)
    return result


_original_delete = models.ElastiCacheBackend.delete_replication_group


def _delete_replication_group(self, replication_group_id, retain_primary_cluster):
    group = _original_delete(self, replication_group_id, retain_primary_cluster)
    _gone_later(self.replication_groups, replication_group_id, group)
    return group


def _memorydb_not_deleting(backend, cluster_name) -> None:
    cluster = backend.clusters.get(cluster_name)
    if cluster is not None and cluster.status == "deleting":
        raise InvalidClusterStateFault(f"Cluster {cluster_name} is being deleted.")


_original_memorydb_delete_cluster = memorydb_models.MemoryDBBackend.delete_cluster


def _memorydb_delete_cluster(self, cluster_name, final_snapshot_name=None):
    """moto's DeleteCluster (status `deleting`, the final snapshot), but the
    cluster stays, `deleting`, until _gone_later removes it; a second delete
    is refused, as on AWS."""
    _memorydb_not_deleting(self, cluster_name)
    cluster = _original_memorydb_delete_cluster(self, cluster_name, final_snapshot_name)
    self.clusters[cluster_name] = cluster  # moto dropped it
    _gone_later(self.clusters, cluster_name, cluster)
    return cluster


_original_memorydb_update_cluster = memorydb_models.MemoryDBBackend.update_cluster


def _memorydb_update_cluster(self, *args, **kwargs):
    _memorydb_not_deleting(self, kwargs.get("cluster_name", args[0] if args else None))
    return _original_memorydb_update_cluster(self, *args, **kwargs)


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


def _memorydb_user_path(name: str) -> Path:
    return STATE_DIR / "memorydb" / "users" / f"{name}.json"


def _memorydb_user_writer(original):
    """CreateUser or UpdateUser (moto_plus.py's), then the user's state file
    as the user now is; nothing is written when the call is refused."""

    def handler(self):
        result = original(self)
        name = json.loads(self.body or "{}").get("UserName")
        user = self.memorydb_backend.memorydb_users[name]
        record = {
            "name": user.name,
            "authentication": user.auth_type,
            "passwords": list(user.passwords),
            "access_string": user.access_string,
        }
        _write_secret(_memorydb_user_path(user.name), record)
        return result

    return handler


_original_delete_user = MemoryDBResponse.delete_user


def _delete_user(self):
    result = _original_delete_user(self)
    _memorydb_user_path(json.loads(self.body or "{}").get("UserName")).unlink(missing_ok=True)
    return result


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
responses.ElastiCacheResponse.modify_replication_group = _modify_replication_group
memorydb_models.MemoryDBBackend.delete_cluster = _memorydb_delete_cluster
memorydb_models.MemoryDBBackend.update_cluster = _memorydb_update_cluster
responses.ElastiCacheResponse.delete_cache_subnet_group = _delete_cache_subnet_group
MemoryDBResponse.create_user = _memorydb_user_writer(MemoryDBResponse.create_user)
MemoryDBResponse.update_user = _memorydb_user_writer(MemoryDBResponse.update_user)
MemoryDBResponse.delete_user = _delete_user

if __name__ == "__main__":
    sys.exit(main())
