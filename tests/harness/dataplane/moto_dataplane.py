"""moto's server with the transitions AWS finishes by itself and moto never does.

Started instead of `moto_server` (same arguments) by the AWS data plane of the
test harness. What it changes, and only that:

- ElastiCache replication groups: a delete goes from `deleting` to gone after
  DATAPLANE_DELETE_SECONDS (AWS takes minutes; moto never finishes it).
- ElastiCache `DeleteCacheSubnetGroup`, which moto does not implement (HTTP
  500): deletes the group, refused while a replication group uses it, as AWS does.
- Every replication group's data-plane settings (auth token, TLS, port) are
  written to $DATAPLANE_STATE_DIR/elasticache/<id>.json at creation, so the
  data plane can run a real redis-server that answers as the group would.
  AWS keeps the auth token too; moto only remembers that one was given.
"""

import json
import os
import sys
import threading
from pathlib import Path

from moto.core.responses import EmptyResult
from moto.elasticache import models, responses
from moto.elasticache.exceptions import CacheSubnetGroupNotFound, ElastiCacheException
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


models.ReplicationGroup.__init__ = _init
models.ElastiCacheBackend.delete_replication_group = _delete_replication_group
responses.ElastiCacheResponse.delete_cache_subnet_group = _delete_cache_subnet_group

if __name__ == "__main__":
    sys.exit(main())
