"""moto with AWS behaviour stackctl relies on and moto lacks; started by the
test harness in place of `moto_server` (same arguments) for every test, and
imported by the AWS data plane's moto (`dataplane/moto_dataplane.py`).

- A launch template version created by CreateLaunchTemplateVersion keeps
  its user data as CreateLaunchTemplate's does (moto stores it raw there, and
  launching an instance from such a version fails an assertion).
- The instance metadata service's IMDSv2 token answer carries its TTL header
  (`X-aws-ec2-metadata-token-ttl-seconds`), as EC2's does and the AWS SDKs
  require; moto's lacks it, so no SDK could take an instance profile's
  credentials from it.
- Auto Scaling instances keep the launch template version they were launched
  with (moto reports the template's default version for every instance).
- Instance refreshes (StartInstanceRefresh, DescribeInstanceRefreshes,
  CancelInstanceRefresh, which moto does not implement) replace the
  instances not on the group's launch template version (all of them without
  `SkipMatching`): new instances first, then the old ones terminated,
  DATAPLANE_DELETE_SECONDS after the start (AWS takes minutes).
- An ElastiCache replication group (cluster mode disabled) created with
  `NumCacheClusters` has that many member clusters, a primary and replicas
  (moto creates the primary only unless `ReplicasPerNodeGroup` is given).
  As on AWS, CreateReplicationGroup refuses AutomaticFailoverEnabled or
  MultiAZEnabled for a group of fewer than 2 member clusters:
  InvalidParameterCombination (HTTP 400) "When using automatic failover,
  there must be at least 2 cache clusters in the replication group."
  (moto took it).
- Those member clusters are cache clusters, as on AWS: DescribeCacheClusters
  lists them (moto lists none) with the group's node type, engine version,
  subnet group, security groups, port, encryption, auth token flag and
  parameter group. Every cache cluster reports `CacheParameterGroup` (name,
  ParameterApplyStatus `in-sync`) and `SecurityGroups`, which moto leaves
  out; without CacheParameterGroupName the group gets the engine's default
  (`default.redis7` for Redis 7 or no version given). CreateReplicationGroup
  refuses an unknown parameter group (CacheParameterGroupNotFound; moto
  takes any name). The members go `deleting` with their group and are gone
  once its deletion finishes (moto_dataplane.py finishes it; moto never
  does); RetainPrimaryCluster keeps the primary as a cluster of its own.
- Cache parameter groups, which moto does not implement:
  CreateCacheParameterGroup (known families only, AWS's naming rules,
  tags), DescribeCacheParameterGroups (IsGlobal false, ARN
  `arn:aws:elasticache:REGION:ACCOUNT:parametergroup:NAME`),
  ModifyCacheParameterGroup (at most 20 at once; `maxmemory-policy` must be
  one of Redis's policies, integer parameters integers; other names are
  taken as strings), ResetCacheParameterGroup, DescribeCacheParameters (the
  family's system parameters, `maxmemory-policy` `volatile-lru` among a
  few, Source "system", merged with the modified ones, Source "user";
  `Source` filters) and DeleteCacheParameterGroup (refused with
  InvalidCacheParameterGroupState while a replication group, even one being
  deleted, or a cache cluster uses it). An unknown name is
  CacheParameterGroupNotFound (HTTP 404). The default groups
  (`default.<family>`, `default.<family>.cluster.on`) exist, are described
  and listed (`default.redis7` always), and cannot be modified or deleted
  (InvalidCacheParameterGroupState). A parameter group's ARN can be tagged
  and its tags listed and removed (moto's ListTagsForResource calls it an
  invalid ARN); a deleted group loses its tags.
- ModifyReplicationGroup, which moto does not implement, applies at once
  (ApplyImmediately or not; AWS takes minutes, or waits for the maintenance
  window) to the group and its member clusters: CacheParameterGroupName
  (refused when unknown), ReplicationGroupDescription, EngineVersion,
  CacheNodeType, AutomaticFailoverEnabled, MultiAZEnabled,
  SnapshotRetentionLimit, SnapshotWindow, SecurityGroupIds,
  PreferredMaintenanceWindow, NotificationTopicArn, AutoMinorVersionUpgrade
  and AuthToken with AuthTokenUpdateStrategy (ROTATE when not given; SET,
  DELETE; only with in-transit encryption, as AWS; the group then reports
  AuthTokenEnabled and a new AuthTokenLastModifiedDate). It answers the
  group as DescribeReplicationGroups does; an unknown group is
  ReplicationGroupNotFoundFault (404), one not `available` (being deleted)
  InvalidReplicationGroupState. Enabling AutomaticFailoverEnabled or
  MultiAZEnabled on a group of one member cluster is refused as
  CreateReplicationGroup refuses it (InvalidParameterCombination), before
  anything changes: replicas must be added first.
- IncreaseReplicaCount and DecreaseReplicaCount, which moto does not
  implement, for cluster-mode-disabled groups and `NewReplicaCount` only
  (0 to 5; ReplicaConfiguration and ReplicasToRemove are not emulated:
  InvalidParameterValue), apply at once (ApplyImmediately or not; AWS takes
  minutes, the group `modifying` meanwhile): the group's members become
  its primary and that many replicas. New replicas are named as moto names
  members (`<group>-002`, `-003`, ...: the lowest free numbers), with read
  endpoints in the group's domain, and are cache clusters as above;
  DecreaseReplicaCount removes the highest-numbered replicas (never the
  primary), whose cache clusters are gone at once (AWS deletes them over
  minutes). A count not above (Increase) or not below (Decrease) the
  current one is InvalidParameterValue; DecreaseReplicaCount to 0 while
  automatic failover is enabled is InvalidParameterCombination, as on AWS
  (turn failover and Multi-AZ off first). Both answer the group as
  ModifyReplicationGroup does; an unknown group is
  ReplicationGroupNotFoundFault (404), one not `available`
  InvalidReplicationGroupState. The group stays `available` throughout.
- MemoryDB users and ACLs, which moto does not implement. CreateUser
  (AWS's naming rules; AuthenticationMode `password` with one or two
  passwords of 16 to 128 characters, or `iam` without any, the only types
  InputAuthenticationType has; an access string of rules only: passwords,
  `nopass` and `reset` are refused), DescribeUsers (UserName, Filters
  UserName, Status, AccessString and AuthenticationType, MaxResults and
  NextToken), UpdateUser (passwords, which replace the old ones, and the
  access string) and DeleteUser (the user leaves its ACLs, as on AWS) answer
  User with Status `active`, ACLNames, MinimumEngineVersion `6.2`,
  Authentication (Type, PasswordCount) and ARN
  `arn:aws:memorydb:REGION:ACCOUNT:user/NAME`. CreateACL (known users, none
  twice), DescribeACLs, UpdateACL (UserNamesToAdd, UserNamesToRemove) and
  DeleteACL (InvalidACLStateFault while a cluster uses it) answer ACL with
  UserNames and Clusters (`.../acl/NAME`); changes apply at once, so there
  are no PendingChanges. A user's ACLNames and an ACL's Clusters are derived
  from the ACLs and clusters, so they never disagree. The built-in user
  `default` (no password, `on ~* &* +@all`) and ACL `open-access` (holding
  it) exist and cannot be modified or deleted (InvalidParameterValueException).
  The users keep their passwords (moto_dataplane.py hands them to the data
  plane). ListTags, TagResource and UntagResource take user and ACL ARNs
  (UserNotFoundFault, ACLNotFoundFault for unknown ones; moto knew only
  clusters, snapshots and subnet groups); a deleted user or ACL loses its tags.
- MemoryDB clusters: CreateCluster refuses an ACL that does not exist
  (ACLNotFoundFault), one other than `open-access` without TLS
  (InvalidParameterCombinationException; moto swapped it for open-access in
  silence), an unknown subnet group (SubnetGroupNotFoundFault; moto failed
  with HTTP 500) and more than 5 replicas; UpdateCluster checks ACLName and
  ReplicaCount the same way. NumReplicasPerShard 0 is honoured (moto's
  `or 1` made it 1): one node per shard and AvailabilityMode `SingleAZ`,
  on create and after ReplicaConfiguration. UpdateCluster's SecurityGroupIds
  show in SecurityGroups (moto kept the old ones there). Each shard
  reports the slots it serves, the 16384 split evenly in order (`0-16383`
  for one shard; moto made up a random range).
- ACM ExportCertificate exports an IMPORTED certificate too (certificate,
  chain and the private key encrypted with the passphrase), which ACM and
  moto refuse unless the certificate was made exportable: on AWS a load
  balancer gets the key of its listener's certificate from ACM internally,
  and here the AWS data plane (`dataplane/dataplane.py`), which plays the
  load balancer, can only get it through the API. Every other certificate
  exports (or is refused) as before.
- SQS keeps its semantics but not moto's cost per message, which grows with
  every message in the queue (so a backlog of thousands made each send,
  receive and delete take milliseconds, and a test at a few hundred events
  a second fall behind for good): a message's visibility and delay are
  read from one clock reading instead of a datetime per message and check;
  SendMessage no longer counts the queue's messages three times to read
  its ContentBasedDeduplication flag; DeleteMessageBatch removes all its
  receipts in one pass over the queue instead of two passes per receipt.
- SQS loses no message and brings none back: moto deletes by rebuilding a
  queue's message list without the lock that sends append under, so on its
  threaded server a message sent during a delete was lost (a whole batch
  of ten at a time) and one deleted by a concurrent delete came back.
  DeleteMessage, DeleteMessageBatch and ReceiveMessage (which moves
  messages to the dead-letter queue) hold that lock.
- The Price List Query API (service `pricing`, JSON 1.1 target
  `AWSPriceListService.*`), which moto does not serve: GetProducts answers
  from `price_list.json` beside this file, Price List documents in the API's
  shape (product with productFamily, attributes and sku; serviceCode; terms
  with OnDemand price dimensions; version; publicationDate), as JSON text,
  FormatVersion `aws_v1`. ServiceCode is required (one the file has no
  product of is NotFoundException); every filter must match: TERM_MATCH and
  EQUALS an exact value, CONTAINS a substring, ANY_OF and NONE_OF a
  comma-separated list, on a product attribute or `productFamily`.
  MaxResults (1 to 100, default 100; MOTO_PRICING_PAGE_SIZE caps a page
  lower, so tests page) and NextToken page through the matches in the
  file's order; a token from another query, or none issued, is
  InvalidNextTokenException; other bad input InvalidParameterException.
  Other Price List actions are not emulated (UnknownOperationException).
"""

import base64
import json
import os
import re
import sys
import threading
import time
import uuid

from moto.acm import models as acm_models
from moto.autoscaling import models as asg_models
from moto.autoscaling import responses as asg_responses
from moto.autoscaling.exceptions import AutoscalingClientError
from moto.core.responses import ActionResult, EmptyResult
from moto.core.types import Base64EncodedString
from moto.core.utils import utcnow
from moto.ec2.models import launch_templates
from moto.elasticache import models as elasticache_models
from moto.elasticache import responses as elasticache_responses
from moto.elasticache.exceptions import ElastiCacheException, InvalidParameterValueException, ReplicationGroupNotFound
from moto.elasticache.exceptions import InvalidParameterCombinationException as ElastiCacheInvalidCombination
from moto.instance_metadata import responses as imds_responses
from moto.instance_metadata import urls as imds_urls
from moto.memorydb import models as memorydb_models
from moto.memorydb import responses as memorydb_responses
from moto.memorydb.exceptions import InvalidParameterValueException as MemoryDBInvalidParameterValue
from moto.memorydb.exceptions import MemoryDBClientError, SubnetGroupNotFoundFault
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main
from moto.sqs import models as sqs_models

REFRESH_SECONDS = float(os.environ.get("DATAPLANE_DELETE_SECONDS", "1"))


_original_metadata_response = imds_responses.InstanceMetadataResponse.metadata_response


def _metadata_response(request, full_url, headers):
    status, out_headers, body = _original_metadata_response(request, full_url, headers)
    if full_url.split("?")[0].endswith("/latest/api/token"):
        ttl = headers.get("X-aws-ec2-metadata-token-ttl-seconds") or "21600"
        out_headers = {**dict(out_headers or {}), "X-aws-ec2-metadata-token-ttl-seconds": str(ttl)}
    return status, out_headers, body


_original_version_init = launch_templates.LaunchTemplateVersion.__init__


def _version_init(self, template, number, data, description):
    user_data = data.get("UserData")
    if isinstance(user_data, str):
        data = {**data, "UserData": Base64EncodedString(user_data)}
    _original_version_init(self, template, number, data, description)


def _group_version(group) -> str | None:
    """The launch template version the group launches now, as a number."""
    template = getattr(group, "ec2_launch_template", None)
    if template is None:
        return None
    return str(template.get_version(group.launch_template_version or "$Default").number)


_original_instance_state_init = asg_models.InstanceState.__init__


def _instance_state_init(self, *args, **kwargs):
    _original_instance_state_init(self, *args, **kwargs)
    self.launched_version = _group_version(self.auto_scaling_group) if self.auto_scaling_group else None


def _instance_launch_template(self):
    group = self.auto_scaling_group
    if group is None or getattr(group, "ec2_launch_template", None) is None:
        return None
    return {
        "LaunchTemplateId": group.ec2_launch_template.id,
        "LaunchTemplateName": group.ec2_launch_template.name,
        "Version": getattr(self, "launched_version", None) or _group_version(group),
    }


# moto looks an error's code up in the service model named by the module of
# its exception class ("moto.<service>..."): a class of this module, which is
# "moto_plus" when moto_dataplane.py imports it, would fail that lookup (an
# HTTP 500 instead of the error), so each names its service's module.
class InstanceRefreshInProgress(AutoscalingClientError):
    __module__ = "moto.autoscaling.exceptions"
    code = "InstanceRefreshInProgress"


class ActiveInstanceRefreshNotFound(AutoscalingClientError):
    __module__ = "moto.autoscaling.exceptions"  # see above InstanceRefreshInProgress
    code = "ActiveInstanceRefreshNotFound"


_refreshes: dict[str, list[dict]] = {}
_refresh_lock = threading.Lock()


def _refresh(backend, name: str, record: dict, skip_matching: bool) -> None:
    with _refresh_lock:
        if record["Status"] != "InProgress":
            return
        group = backend.autoscaling_groups.get(name)
        if group is None:
            record.update(Status="Failed", StatusReason="the group was deleted", EndTime=utcnow())
            return
        current = _group_version(group)
        old = [
            s.instance.id
            for s in group.instance_states
            if not skip_matching or getattr(s, "launched_version", None) != current
        ]
        if old:
            # New instances first (MaxHealthyPercentage 200), then the old ones go.
            group.set_desired_capacity((group.desired_capacity or 0) + len(old))
            backend.detach_instances(name, old, True)
            backend.ec2_backend.terminate_instances(old)
        record.update(Status="Successful", PercentageComplete=100, InstancesToUpdate=0, EndTime=utcnow())


def _start_instance_refresh(self):
    name = self._get_param("AutoScalingGroupName")
    preferences = self._get_param("Preferences", {}) or {}
    backend = self.autoscaling_backend
    if name not in backend.autoscaling_groups:
        raise AutoscalingClientError("ValidationError", f"AutoScalingGroup name not found - {name}")
    with _refresh_lock:
        history = _refreshes.setdefault(name, [])
        if any(r["Status"] in ("Pending", "InProgress") for r in history):
            raise InstanceRefreshInProgress(f"An Instance Refresh is already in progress for {name}.")
        record = {
            "InstanceRefreshId": str(uuid.uuid4()),
            "AutoScalingGroupName": name,
            "Status": "InProgress",
            "StartTime": utcnow(),
            "PercentageComplete": 0,
            "InstancesToUpdate": len(backend.autoscaling_groups[name].instance_states),
        }
        history.insert(0, record)
    skip = str(preferences.get("SkipMatching", "false")).lower() == "true"
    threading.Timer(REFRESH_SECONDS, _refresh, (backend, name, record, skip)).start()
    return ActionResult({"InstanceRefreshId": record["InstanceRefreshId"]})


def _describe_instance_refreshes(self):
    name = self._get_param("AutoScalingGroupName")
    ids = self._get_param("InstanceRefreshIds", []) or []
    with _refresh_lock:
        found = [dict(r) for r in _refreshes.get(name, []) if not ids or r["InstanceRefreshId"] in ids]
    return ActionResult({"InstanceRefreshes": found})


def _cancel_instance_refresh(self):
    name = self._get_param("AutoScalingGroupName")
    with _refresh_lock:
        for r in _refreshes.get(name, []):
            if r["Status"] in ("Pending", "InProgress"):
                r.update(Status="Cancelled", EndTime=utcnow())
                return ActionResult({"InstanceRefreshId": r["InstanceRefreshId"]})
    raise ActiveInstanceRefreshNotFound(f"No in progress or pending Instance Refresh found for {name}.")


_original_members_disabled = elasticache_models.ReplicationGroup._set_node_members_clusters_disabled


def _members_disabled(self, *args, **kwargs):
    if not kwargs.get("replicas_per_node_group") and kwargs.get("num_cache_clusters"):
        kwargs["replicas_per_node_group"] = kwargs["num_cache_clusters"] - 1
    return _original_members_disabled(self, *args, **kwargs)


# ----- ElastiCache: cache parameter groups, member clusters, ModifyReplicationGroup, replica counts


class CacheParameterGroupNotFound(ElastiCacheException):
    __module__ = "moto.elasticache.exceptions"  # see above InstanceRefreshInProgress
    code = "CacheParameterGroupNotFound"

    def __init__(self, name: str):
        super().__init__(f"CacheParameterGroup {name} not found.")


class CacheParameterGroupAlreadyExists(ElastiCacheException):
    __module__ = "moto.elasticache.exceptions"  # see above InstanceRefreshInProgress
    code = "CacheParameterGroupAlreadyExists"

    def __init__(self, name: str):
        super().__init__(f"Cache Parameter Group {name} already exists.")


class InvalidCacheParameterGroupState(ElastiCacheException):
    __module__ = "moto.elasticache.exceptions"  # see above InstanceRefreshInProgress
    code = "InvalidCacheParameterGroupState"


class InvalidReplicationGroupState(ElastiCacheException):
    __module__ = "moto.elasticache.exceptions"  # see above InstanceRefreshInProgress
    code = "InvalidReplicationGroupState"


# The families CreateCacheParameterGroup accepts, and those with a default
# group (`default.<family>`, `default.<family>.cluster.on` for cluster mode).
PARAMETER_GROUP_FAMILIES = {
    "memcached1.4", "memcached1.5", "memcached1.6", "redis2.6", "redis2.8", "redis3.2", "redis4.0",
    "redis5.0", "redis6.x", "redis7", "valkey7", "valkey8",
}  # fmt: skip
EVICTION_POLICIES = (
    "volatile-lru,allkeys-lru,volatile-lfu,allkeys-lfu,volatile-random,allkeys-random,volatile-ttl,noeviction"
)
# What DescribeCacheParameters reports of a Redis (or Valkey) family's
# parameters that no one modified (Source "system"); AWS lists many more.
SYSTEM_PARAMETERS = {
    "maxmemory-policy": ("volatile-lru", "string", EVICTION_POLICIES, "Max memory policy."),
    "maxmemory-samples": ("3", "integer", "1-", "Max memory samples."),
    "reserved-memory-percent": ("25", "integer", "0-100", "The percent of memory reserved for non-cache memory usage."),
    "timeout": ("0", "integer", "0,20-", "Close connection if client is idle for a given number of seconds."),
    "tcp-keepalive": ("300", "integer", "0-", "If non-zero, send ACKs every given number of seconds."),
    "notify-keyspace-events": ("", "string", None, "The keyspace events for Redis to notify Pub/Sub clients about."),
}  # fmt: skip


class CacheParameterGroup:
    """A cache parameter group: the parameters someone modified (Source
    "user") over the family's system defaults."""

    def __init__(self, backend, name: str, family: str, description: str):
        self.cache_parameter_group_name = name
        self.cache_parameter_group_family = family
        self.description = description
        self.is_global = False
        self.arn = f"arn:aws:elasticache:{backend.region_name}:{backend.account_id}:parametergroup:{name}"
        self.user: dict[str, str] = {}

    @property
    def is_default(self) -> bool:
        return self.cache_parameter_group_name.startswith("default.")

    def system(self) -> dict:
        family = self.cache_parameter_group_family
        return SYSTEM_PARAMETERS if family.startswith(("redis", "valkey")) else {}

    def parameters(self, source: str | None) -> list[dict]:
        out = []
        system = self.system()
        for name in [*system, *(n for n in self.user if n not in system)]:
            value, data_type, allowed, description = system.get(name, (None, "string", None, None))
            param = {
                "ParameterName": name,
                "ParameterValue": self.user.get(name, value),
                "Source": "user" if name in self.user else "system",
                "DataType": data_type,
                "IsModifiable": True,
                "ChangeType": "immediate",
            }
            if allowed:
                param["AllowedValues"] = allowed
            if description:
                param["Description"] = description
            if source is None or param["Source"] == source:
                out.append(param)
        return out


def _parameter_groups(backend) -> dict[str, CacheParameterGroup]:
    groups = getattr(backend, "cache_parameter_groups", None)
    if groups is None:
        groups = backend.cache_parameter_groups = {}
        _parameter_group(backend, "default.redis7")
    return groups


def _default_family(name: str) -> str | None:
    """The family of a default group's name (`default.redis7`,
    `default.redis7.cluster.on`), None for any other name."""
    if not name.startswith("default."):
        return None
    family = name.removeprefix("default.").removesuffix(".cluster.on")
    return family if family in PARAMETER_GROUP_FAMILIES else None


def _parameter_group(backend, name: str) -> CacheParameterGroup:
    """The group called `name`; a default group exists once asked for, as
    every default group exists on AWS."""
    groups = _parameter_groups(backend)
    if name not in groups:
        family = _default_family(name)
        if family is None:
            raise CacheParameterGroupNotFound(name)
        groups[name] = CacheParameterGroup(backend, name, family, f"Default parameter group for {family}")
    return groups[name]


def _default_parameter_group_name(engine: str | None, version: str | None, cluster_mode: str | None) -> str:
    """The default group AWS gives a cluster created without one."""
    engine = (engine or "redis").lower()
    if engine == "memcached":
        return "default.memcached1.6"
    try:
        major, minor = ([int(p) for p in (version or "").split(".")[:2]] + [0, 0])[:2]
    except ValueError:
        major, minor = 0, 0
    if engine == "valkey":
        family = "valkey8" if major >= 8 or not version else "valkey7"
    elif not version or major >= 7:
        family = "redis7"
    elif major == 6:
        family = "redis6.x"
    elif major in (2, 3) and f"redis{major}.{minor}" in PARAMETER_GROUP_FAMILIES:
        family = f"redis{major}.{minor}"
    else:
        family = f"redis{major}.0" if f"redis{major}.0" in PARAMETER_GROUP_FAMILIES else "redis7"
    return f"default.{family}" + (".cluster.on" if cluster_mode == "enabled" else "")


def _parameter_group_in_use(backend, name: str) -> bool:
    """Whether a replication group (even one being deleted: AWS refuses
    then too) or a cache cluster uses the group. A group whose deletion
    finished (it is no longer described) holds nothing, nor do its members."""
    _prune_members(backend)
    if any(getattr(g, "cache_parameter_group_name", None) == name for g in backend.replication_groups.values()):
        return True
    return any(getattr(c, "cache_parameter_group_name", None) == name for c in backend.cache_clusters.values())


def _create_cache_parameter_group(self):
    backend = self.elasticache_backend
    name = self._get_param("CacheParameterGroupName") or ""
    family = self._get_param("CacheParameterGroupFamily") or ""
    groups = _parameter_groups(backend)
    if name in groups or _default_family(name):
        raise CacheParameterGroupAlreadyExists(name)
    if not re.fullmatch(r"[A-Za-z](?!.*--)[A-Za-z0-9-]{0,254}(?<!-)", name):
        raise InvalidParameterValueException(
            "Parameter group name must begin with a letter, contain only ASCII letters, digits, and hyphens, "
            "and must not end with a hyphen or contain two consecutive hyphens."
        )
    if family not in PARAMETER_GROUP_FAMILIES:
        raise InvalidParameterValueException(f"The parameter CacheParameterGroupFamily {family} is not valid.")
    group = CacheParameterGroup(backend, name, family, self._get_param("Description") or "")
    groups[name] = group
    tags = self._get_param("Tags", []) or []
    if tags:
        backend.tagging_service.tag_resource(group.arn, tags)
    return ActionResult({"CacheParameterGroup": group})


def _describe_cache_parameter_groups(self):
    backend = self.elasticache_backend
    name = self._get_param("CacheParameterGroupName")
    groups = [_parameter_group(backend, name)] if name else list(_parameter_groups(backend).values())
    return ActionResult({"CacheParameterGroups": groups})


def _modify_cache_parameter_group(self):
    backend = self.elasticache_backend
    group = _parameter_group(backend, self._get_param("CacheParameterGroupName") or "")
    if group.is_default:
        raise InvalidCacheParameterGroupState("Cannot modify a default parameter group.")
    values = self._get_param("ParameterNameValues", []) or []
    if not values or len(values) > 20:
        raise InvalidParameterValueException("Between 1 and 20 parameters may be modified at once.")
    changes = {}
    for value in values:
        pname, pvalue = value.get("ParameterName"), value.get("ParameterValue")
        if not pname or pvalue is None:
            raise InvalidParameterValueException("Each parameter needs a ParameterName and a ParameterValue.")
        data_type, allowed = group.system().get(pname, (None, "string", None, None))[1:3]
        if pname == "maxmemory-policy" and allowed and pvalue not in allowed.split(","):
            raise InvalidParameterValueException(f"Value {pvalue} for parameter {pname} is invalid.")
        if data_type == "integer" and not pvalue.lstrip("-").isdigit():
            raise InvalidParameterValueException(f"Value {pvalue} for parameter {pname} is invalid.")
        changes[pname] = pvalue
    group.user.update(changes)
    return ActionResult({"CacheParameterGroupName": group.cache_parameter_group_name})


def _reset_cache_parameter_group(self):
    backend = self.elasticache_backend
    group = _parameter_group(backend, self._get_param("CacheParameterGroupName") or "")
    if group.is_default:
        raise InvalidCacheParameterGroupState("Cannot modify a default parameter group.")
    if self._get_bool_param("ResetAllParameters"):
        group.user.clear()
    else:
        for value in self._get_param("ParameterNameValues", []) or []:
            group.user.pop(value.get("ParameterName"), None)
    return ActionResult({"CacheParameterGroupName": group.cache_parameter_group_name})


def _describe_cache_parameters(self):
    group = _parameter_group(self.elasticache_backend, self._get_param("CacheParameterGroupName") or "")
    return ActionResult({"Parameters": group.parameters(self._get_param("Source"))})


def _delete_cache_parameter_group(self):
    backend = self.elasticache_backend
    name = self._get_param("CacheParameterGroupName") or ""
    group = _parameter_group(backend, name)
    if group.is_default:
        raise InvalidCacheParameterGroupState("Cannot delete a default parameter group.")
    if _parameter_group_in_use(backend, name):
        raise InvalidCacheParameterGroupState(
            f"One or more cache clusters are still members of this parameter group {name}, "
            "so the group cannot be deleted."
        )
    del _parameter_groups(backend)[name]
    backend.tagging_service.delete_all_tags_for_resource(group.arn)
    return EmptyResult()


_original_elasticache_init = elasticache_models.ElastiCacheBackend.__init__


def _elasticache_init(self, *args, **kwargs):
    _original_elasticache_init(self, *args, **kwargs)
    # Parameter group ARNs can be tagged and listed, as on AWS.
    self.arn_regex = re.compile(
        r"^arn:aws:elasticache:.*:[0-9]*:(cluster|snapshot|subnetgroup|replicationgroup|user|parametergroup):.*$"
    )


def _cluster_parameter_group(self) -> dict:
    return {
        "CacheParameterGroupName": self.cache_parameter_group_name
        or _default_parameter_group_name(self.engine, self.engine_version, None),
        "ParameterApplyStatus": "in-sync",
        "CacheNodeIdsToReboot": [],
    }


def _cluster_security_groups(self) -> list[dict]:
    return [{"SecurityGroupId": sg, "Status": "active"} for sg in self.security_group_ids or []]


def _members(backend, group) -> list:
    return [
        c
        for c in backend.cache_clusters.values()
        if getattr(c, "moto_plus_member_of", None) == group.replication_group_id
    ]


def _prune_members(backend) -> None:
    """Member clusters go with their group once its deletion finished."""
    for cid, cluster in list(backend.cache_clusters.items()):
        owner = getattr(cluster, "moto_plus_member_of", None)
        if owner is not None and owner not in backend.replication_groups:
            del backend.cache_clusters[cid]


def _add_members(backend, group, only: set[str] | None = None) -> None:
    """The group's member clusters (those of `only`, when given), as
    DescribeCacheClusters lists them."""
    for node_group in group.node_groups:
        for member in node_group["node_group_members"]:
            cid = member["cache_cluster_id"]
            if only is not None and cid not in only:
                continue
            cluster = elasticache_models.CacheCluster(
                account_id=backend.account_id,
                region_name=backend.region_name,
                cache_cluster_id=cid,
                cache_node_type=group.cache_node_type,
                replication_group_id=group.replication_group_id,
                az_mode="single-az",
                preferred_availability_zone=member.get("preferred_availability_zone"),
                num_cache_nodes=1,
                engine=group.engine,
                engine_version=group.engine_version,
                cache_parameter_group_name=group.cache_parameter_group_name,
                cache_subnet_group_name=group.cache_subnet_group_name,
                transit_encryption_enabled=group.transit_encryption_enabled,
                network_type=group.network_type,
                ip_discovery=group.ip_discovery,
                snapshot_name=None,
                preferred_maintenance_window=group.preferred_maintenance_window,
                port=group.port,
                notification_topic_arn=group.notification_topic_arn,
                auto_minor_version_upgrade=group.auto_minor_version_upgrade,
                snapshot_retention_limit=group.snapshot_retention_limit,
                snapshot_window=group.snapshot_window,
                auth_token=None,
                outpost_mode=None,
                preferred_outpost_arn=member.get("preferred_outpost_arn"),
                preferred_availability_zones=None,
                cache_security_group_names=group.cache_security_group_names,
                security_group_ids=list(group.security_group_ids or []),
                tags=None,
                snapshot_arns=None,
                preferred_outpost_arns=None,
                log_delivery_configurations=[],
                cache_node_ids_to_remove=None,
                cache_node_ids_to_reboot=None,
            )
            cluster.replication_group_id = group.replication_group_id
            cluster.auth_token_enabled = group.auth_token_enabled
            cluster.at_rest_encryption_enabled = group.at_rest_encryption_enabled
            cluster.moto_plus_member_of = group.replication_group_id
            backend.cache_clusters[cid] = cluster


_original_create_replication_group = elasticache_models.ElastiCacheBackend.create_replication_group


# What ElastiCache answers to automatic failover (or Multi-AZ) on a group of
# one cache cluster: a primary alone has nothing to fail over to.
FAILOVER_NEEDS_TWO = "When using automatic failover, there must be at least 2 cache clusters in the replication group."


def _create_replication_group(self, *args, **kwargs):
    name = kwargs.get("cache_parameter_group_name")
    if name:
        _parameter_group(self, name)  # refused when unknown, as AWS does
    if kwargs.get("cluster_mode") != "enabled" and (kwargs.get("num_node_groups") or 1) == 1:
        replicas = kwargs.get("replicas_per_node_group")
        clusters = replicas + 1 if replicas else kwargs.get("num_cache_clusters") or 1
        if clusters < 2 and (kwargs.get("automatic_failover_enabled") or kwargs.get("multi_az_enabled")):
            raise ElastiCacheInvalidCombination(FAILOVER_NEEDS_TWO)
    group = _original_create_replication_group(self, *args, **kwargs)
    group.cache_parameter_group_name = name or _default_parameter_group_name(
        group.engine, group.engine_version, group.cluster_mode
    )
    _prune_members(self)
    _add_members(self, group)
    return group


_original_describe_cache_clusters = elasticache_models.ElastiCacheBackend.describe_cache_clusters


def _describe_cache_clusters(self, *args, **kwargs):
    _prune_members(self)
    return _original_describe_cache_clusters(self, *args, **kwargs)


_original_delete_replication_group = elasticache_models.ElastiCacheBackend.delete_replication_group


def _delete_replication_group(self, replication_group_id, retain_primary_cluster):
    group = self.replication_groups.get(replication_group_id)
    primary = None
    if group is not None and group.node_groups:
        roles = group.node_groups[0]["node_group_members"]
        primary = next((m["cache_cluster_id"] for m in roles if m.get("current_role") == "primary"), None)
    deleted = _original_delete_replication_group(self, replication_group_id, retain_primary_cluster)
    for cluster in _members(self, deleted):
        if retain_primary_cluster and cluster.cache_cluster_id == primary:
            # Kept as a cluster of its own.
            cluster.moto_plus_member_of = None
            cluster.replication_group_id = None
        else:
            cluster.cache_cluster_status = cluster.status = "deleting"
    return deleted


def _modify_replication_group(self):
    backend = self.elasticache_backend
    gid = self._get_param("ReplicationGroupId")
    group = backend.replication_groups.get(gid)
    if group is None:
        raise ReplicationGroupNotFound(gid)
    if group.status != "available":
        raise InvalidReplicationGroupState(f"Replication group {gid} is not in available state.")
    if len(group.member_clusters) < 2 and (
        self._get_bool_param("AutomaticFailoverEnabled") or self._get_bool_param("MultiAZEnabled")
    ):
        raise ElastiCacheInvalidCombination(FAILOVER_NEEDS_TWO)
    members = _members(backend, group)

    def both(attribute: str, value) -> None:
        setattr(group, attribute, value)
        for cluster in members:
            setattr(cluster, attribute, value)

    name = self._get_param("CacheParameterGroupName")
    if name:
        _parameter_group(backend, name)
        both("cache_parameter_group_name", name)
    description = self._get_param("ReplicationGroupDescription")
    if description is not None:
        group.description = description
    for param, attribute in (
        ("EngineVersion", "engine_version"),
        ("CacheNodeType", "cache_node_type"),
        ("SnapshotWindow", "snapshot_window"),
        ("PreferredMaintenanceWindow", "preferred_maintenance_window"),
        ("NotificationTopicArn", "notification_topic_arn"),
    ):
        value = self._get_param(param)
        if value:
            both(attribute, value)
    failover = self._get_bool_param("AutomaticFailoverEnabled")
    if failover is not None:
        group.automatic_failover = "enabled" if failover else "disabled"
    multi_az = self._get_bool_param("MultiAZEnabled")
    if multi_az is not None:
        group.multi_az = "enabled" if multi_az else "disabled"
    upgrade = self._get_bool_param("AutoMinorVersionUpgrade")
    if upgrade is not None:
        both("auto_minor_version_upgrade", upgrade)
    retention = self._get_int_param("SnapshotRetentionLimit")
    if retention is not None:
        both("snapshot_retention_limit", retention)
        if retention == 0:
            group.snapshotting_cluster_id = None
        elif not group.snapshotting_cluster_id and group.member_clusters:
            group.snapshotting_cluster_id = group.member_clusters[min(1, len(group.member_clusters) - 1)]
    security_groups = self._get_param("SecurityGroupIds")
    if security_groups is not None:
        both("security_group_ids", list(security_groups))
    token = self._get_param("AuthToken")
    strategy = (self._get_param("AuthTokenUpdateStrategy") or ("ROTATE" if token else "")).upper()
    if strategy:
        if not group.transit_encryption_enabled:
            raise InvalidParameterValueException(
                "The AUTH token can be modified only when in-transit encryption is enabled."
            )
        if strategy in ("ROTATE", "SET") and not token:
            raise InvalidParameterValueException(f"AuthTokenUpdateStrategy {strategy} needs an AuthToken.")
        if strategy not in ("ROTATE", "SET", "DELETE"):
            raise InvalidParameterValueException(f"Invalid AuthTokenUpdateStrategy {strategy}.")
        both("auth_token_enabled", strategy != "DELETE")
        both("auth_token_last_modified_date", utcnow())
    return ActionResult({"ReplicationGroup": group})


def _replica_count_group(response):
    """The cluster-mode-disabled group IncreaseReplicaCount or
    DecreaseReplicaCount changes, and the NewReplicaCount asked for."""
    backend = response.elasticache_backend
    gid = response._get_param("ReplicationGroupId")
    group = backend.replication_groups.get(gid)
    if group is None:
        raise ReplicationGroupNotFound(gid)
    if group.status != "available":
        raise InvalidReplicationGroupState(f"Replication group {gid} is not in available state.")
    if group.cluster_enabled or len(group.node_groups) != 1:
        raise InvalidParameterValueException(
            "moto_plus: only cluster-mode-disabled groups change their replica count here."
        )
    count = response._get_int_param("NewReplicaCount")
    if count is None:
        raise InvalidParameterValueException(
            "moto_plus: NewReplicaCount is required (ReplicaConfiguration and ReplicasToRemove are not emulated)."
        )
    if not 0 <= count <= 5:
        raise InvalidParameterValueException(f"NewReplicaCount must be between 0 and 5, not {count}.")
    return backend, group, count


def _increase_replica_count(self):
    backend, group, count = _replica_count_group(self)
    node_group = group.node_groups[0]
    nodes = node_group["node_group_members"]
    if count <= len(nodes) - 1:
        raise InvalidParameterValueException(
            f"The new replica count ({count}) must be greater than the current replica count ({len(nodes) - 1})."
        )
    primary = next((m for m in nodes if m.get("current_role") == "primary"), nodes[0])
    # Member endpoints are `<cluster id>.<the group's domain>` (moto's naming).
    domain = primary["read_endpoint"]["address"][len(primary["cache_cluster_id"]) + 1 :]
    taken = {m["cache_cluster_id"] for m in nodes}
    added = set()
    number = 1
    while len(nodes) < count + 1:
        number += 1
        cid = f"{group.replication_group_id}-{number:0>3}"
        if cid in taken:
            continue
        nodes.append(
            {
                "cache_cluster_id": cid,
                "cache_node_id": node_group["node_group_id"],
                "read_endpoint": {"address": f"{cid}.{domain}", "port": group.port},
                "preferred_availability_zone": "us-east-1b",
                "current_role": "replica",
            }
        )
        group.member_clusters.append(cid)
        added.add(cid)
    _add_members(backend, group, only=added)
    return ActionResult({"ReplicationGroup": group})


def _decrease_replica_count(self):
    backend, group, count = _replica_count_group(self)
    nodes = group.node_groups[0]["node_group_members"]
    if count >= len(nodes) - 1:
        raise InvalidParameterValueException(
            f"The new replica count ({count}) must be less than the current replica count ({len(nodes) - 1})."
        )
    if count == 0 and group.automatic_failover in ("enabled", "enabling"):
        raise ElastiCacheInvalidCombination(FAILOVER_NEEDS_TWO)
    # The newest replicas go; the primary stays.
    replicas = [m for m in nodes if m.get("current_role") != "primary"]
    removed = {m["cache_cluster_id"] for m in replicas[count:]}
    nodes[:] = [m for m in nodes if m["cache_cluster_id"] not in removed]
    group.member_clusters[:] = [c for c in group.member_clusters if c not in removed]
    for cid in removed:
        backend.cache_clusters.pop(cid, None)
    if group.snapshotting_cluster_id in removed:
        group.snapshotting_cluster_id = group.member_clusters[min(1, len(group.member_clusters) - 1)]
    return ActionResult({"ReplicationGroup": group})


# ----- MemoryDB: users, ACLs, clusters' ACLs and replica counts


class MemoryDBFault(MemoryDBClientError):
    """A MemoryDB error whose code is its class's name, the model's error shape."""

    def __init__(self, message: str):
        super().__init__(type(self).__name__, message)


class UserAlreadyExistsFault(MemoryDBFault):
    pass


class UserNotFoundFault(MemoryDBFault):
    pass


class InvalidUserStateFault(MemoryDBFault):
    pass


class DuplicateUserNameFault(MemoryDBFault):
    pass


class ACLAlreadyExistsFault(MemoryDBFault):
    pass


class ACLNotFoundFault(MemoryDBFault):
    pass


class InvalidACLStateFault(MemoryDBFault):
    pass


class InvalidParameterCombinationException(MemoryDBFault):
    pass


# The user and the ACL every region has: `default` needs no password and
# may do anything; `open-access` holds it alone. Neither can be changed.
MEMORYDB_DEFAULT_USER = "default"
MEMORYDB_OPEN_ACCESS = "open-access"
MEMORYDB_ACCESS_ALL = "on ~* &* +@all"
MEMORYDB_MIN_ENGINE_VERSION = "6.2"
MEMORYDB_MAX_REPLICAS = 5
SLOTS = 16384


class MemoryDBUser:
    """A MemoryDB user. It keeps its passwords, as AWS does (never
    answering them); its ACLNames are the ACLs that list it."""

    def __init__(self, backend, name: str, access_string: str, auth_type: str, passwords: list[str]):
        self.name = name
        self.access_string = access_string
        self.auth_type = auth_type
        self.passwords = list(passwords)
        self.status = "active"
        self.arn = f"arn:aws:memorydb:{backend.region_name}:{backend.account_id}:user/{name}"

    def to_dict(self, backend) -> dict:
        authentication: dict = {"Type": self.auth_type}
        if self.auth_type == "password":
            authentication["PasswordCount"] = len(self.passwords)
        return {
            "Name": self.name,
            "Status": self.status,
            "AccessString": self.access_string,
            "ACLNames": [a.name for a in backend.memorydb_acls.values() if self.name in a.user_names],
            "MinimumEngineVersion": MEMORYDB_MIN_ENGINE_VERSION,
            "Authentication": authentication,
            "ARN": self.arn,
        }


class MemoryDBACL:
    """A MemoryDB access control list: its users. Its Clusters are the
    clusters that name it, so a deleted cluster leaves it at once."""

    def __init__(self, backend, name: str, user_names: list[str]):
        self.name = name
        self.user_names = list(user_names)
        self.status = "active"
        self.arn = f"arn:aws:memorydb:{backend.region_name}:{backend.account_id}:acl/{name}"

    def clusters(self, backend) -> list[str]:
        return [c.cluster_name for c in backend.clusters.values() if c.acl_name == self.name]

    def to_dict(self, backend) -> dict:
        # Changes apply at once: no PendingChanges to report.
        return {
            "Name": self.name,
            "Status": self.status,
            "UserNames": list(self.user_names),
            "MinimumEngineVersion": MEMORYDB_MIN_ENGINE_VERSION,
            "Clusters": self.clusters(backend),
            "ARN": self.arn,
        }


_original_memorydb_init = memorydb_models.MemoryDBBackend.__init__


def _memorydb_init(self, *args, **kwargs):
    _original_memorydb_init(self, *args, **kwargs)
    self.memorydb_users = {
        MEMORYDB_DEFAULT_USER: MemoryDBUser(self, MEMORYDB_DEFAULT_USER, MEMORYDB_ACCESS_ALL, "no-password", [])
    }
    self.memorydb_acls = {MEMORYDB_OPEN_ACCESS: MemoryDBACL(self, MEMORYDB_OPEN_ACCESS, [MEMORYDB_DEFAULT_USER])}


def _memorydb_params(response) -> dict:
    return json.loads(response.body or "{}")


def _memorydb_check_name(name: str, what: str) -> None:
    if not re.fullmatch(r"[A-Za-z](?!.*--)[A-Za-z0-9-]*(?<!-)", name or ""):
        raise MemoryDBInvalidParameterValue(
            f"{what} must begin with a letter, contain only ASCII letters, digits, and hyphens, "
            "and must not end with a hyphen or contain two consecutive hyphens."
        )


def _memorydb_access_string(value: str | None) -> str:
    """An access string as AWS takes it: rules only; passwords (and the
    `reset` that would drop them) are set through the API."""
    if not value or not value.strip():
        raise MemoryDBInvalidParameterValue("Access string must not be empty.")
    for token in value.split():
        if token.lower() in ("reset", "nopass", "resetpass") or token[:1] in (">", "<", "#", "!"):
            raise MemoryDBInvalidParameterValue(
                f"Access string {value} is invalid: {token} is not allowed (passwords are set through the API)."
            )
    return value


def _memorydb_authentication(mode: dict | None) -> tuple[str, list[str]]:
    """A user's authentication type and passwords from an AuthenticationMode:
    `password` with one or two passwords of 16 to 128 characters, or `iam`
    without any (InputAuthenticationType has no other value)."""
    mode = mode or {}
    passwords = list(mode.get("Passwords") or [])
    kind = mode.get("Type") or ("password" if passwords else None)
    if kind == "password":
        if not passwords:
            raise InvalidParameterCombinationException("Passwords are required for authentication type password.")
        if len(passwords) > 2:
            raise MemoryDBInvalidParameterValue("A user can have at most two passwords.")
        if any(not 16 <= len(p) <= 128 for p in passwords):
            raise MemoryDBInvalidParameterValue("Passwords length must be between 16-128 characters.")
    elif kind == "iam":
        if passwords:
            raise InvalidParameterCombinationException("Passwords cannot be given for authentication type iam.")
    else:
        raise MemoryDBInvalidParameterValue(f"Invalid authentication type {kind}: must be password or iam.")
    return kind, passwords


def _memorydb_user(backend, name: str | None) -> MemoryDBUser:
    user = backend.memorydb_users.get(name or "")
    if user is None:
        raise UserNotFoundFault(f"User {name} not found.")
    return user


def _memorydb_acl(backend, name: str | None) -> MemoryDBACL:
    acl = backend.memorydb_acls.get(name or "")
    if acl is None:
        raise ACLNotFoundFault(f"ACL {name} not found.")
    return acl


def _memorydb_known_users(backend, names: list[str]) -> None:
    """Every name is a user, and none is given twice."""
    for name in names:
        _memorydb_user(backend, name)
    if len(set(names)) != len(names):
        raise DuplicateUserNameFault("Duplicate user names are not allowed.")


def _memorydb_page(items: list, params: dict) -> tuple[list, dict]:
    """The page of `items` that MaxResults and NextToken ask for, and the
    NextToken of the next one, if any (the index it starts at)."""
    token = params.get("NextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise MemoryDBInvalidParameterValue(f"Invalid NextToken {token}.") from None
    limit = params.get("MaxResults") or 100
    if limit < 1:
        raise MemoryDBInvalidParameterValue("MaxResults must be at least 1.")
    end = start + limit
    return items[start:end], ({"NextToken": str(end)} if end < len(items) else {})


# DescribeUsers' filters: a name (any case) -> the user's values it matches.
MEMORYDB_USER_FILTERS = {
    "username": lambda user: [user.name],
    "status": lambda user: [user.status],
    "accessstring": lambda user: [user.access_string],
    "authenticationtype": lambda user: [user.auth_type],
}


def _create_user(self):
    backend = self.memorydb_backend
    params = _memorydb_params(self)
    name = params.get("UserName") or ""
    _memorydb_check_name(name, "User name")
    if name in backend.memorydb_users:
        raise UserAlreadyExistsFault(f"User {name} already exists.")
    access_string = _memorydb_access_string(params.get("AccessString"))
    auth_type, passwords = _memorydb_authentication(params.get("AuthenticationMode"))
    user = MemoryDBUser(backend, name, access_string, auth_type, passwords)
    backend.memorydb_users[name] = user
    backend.tagger.tag_resource(user.arn, params.get("Tags"))
    return ActionResult({"User": user.to_dict(backend)})


def _describe_users(self):
    backend = self.memorydb_backend
    params = _memorydb_params(self)
    name = params.get("UserName")
    users = [_memorydb_user(backend, name)] if name else list(backend.memorydb_users.values())
    for f in params.get("Filters") or []:
        values = MEMORYDB_USER_FILTERS.get((f.get("Name") or "").lower())
        if values is None:
            raise MemoryDBInvalidParameterValue(f"Invalid filter name {f.get('Name')}.")
        wanted = set(f.get("Values") or [])
        users = [u for u in users if wanted.intersection(values(u))]
    page, token = _memorydb_page(users, params)
    return ActionResult({"Users": [u.to_dict(backend) for u in page], **token})


def _update_user(self):
    backend = self.memorydb_backend
    params = _memorydb_params(self)
    user = _memorydb_user(backend, params.get("UserName"))
    if user.name == MEMORYDB_DEFAULT_USER:
        raise MemoryDBInvalidParameterValue("The default user cannot be modified.")
    if user.status != "active":
        raise InvalidUserStateFault(f"User {user.name} is not in active state.")
    mode, access_string = params.get("AuthenticationMode"), params.get("AccessString")
    if mode is None and access_string is None:
        raise InvalidParameterCombinationException("At least one of AuthenticationMode and AccessString is required.")
    access_string = user.access_string if access_string is None else _memorydb_access_string(access_string)
    auth_type, passwords = (user.auth_type, user.passwords) if mode is None else _memorydb_authentication(mode)
    user.access_string, user.auth_type, user.passwords = access_string, auth_type, passwords
    return ActionResult({"User": user.to_dict(backend)})


def _delete_user(self):
    backend = self.memorydb_backend
    user = _memorydb_user(backend, _memorydb_params(self).get("UserName"))
    if user.name == MEMORYDB_DEFAULT_USER:
        raise MemoryDBInvalidParameterValue("The default user cannot be deleted.")
    if user.status != "active":
        raise InvalidUserStateFault(f"User {user.name} is not in active state.")
    user.status = "deleting"
    answer = user.to_dict(backend)
    # As AWS: the user leaves its ACLs, and so the clusters they serve.
    for acl in backend.memorydb_acls.values():
        if user.name in acl.user_names:
            acl.user_names.remove(user.name)
    del backend.memorydb_users[user.name]
    backend.tagger.delete_all_tags_for_resource(user.arn)
    return ActionResult({"User": answer})


def _create_acl(self):
    backend = self.memorydb_backend
    params = _memorydb_params(self)
    name = params.get("ACLName") or ""
    _memorydb_check_name(name, "ACL name")
    if name in backend.memorydb_acls:
        raise ACLAlreadyExistsFault(f"ACL {name} already exists.")
    users = list(params.get("UserNames") or [])
    _memorydb_known_users(backend, users)
    acl = MemoryDBACL(backend, name, users)
    backend.memorydb_acls[name] = acl
    backend.tagger.tag_resource(acl.arn, params.get("Tags"))
    return ActionResult({"ACL": acl.to_dict(backend)})


def _describe_acls(self):
    backend = self.memorydb_backend
    params = _memorydb_params(self)
    name = params.get("ACLName")
    acls = [_memorydb_acl(backend, name)] if name else list(backend.memorydb_acls.values())
    page, token = _memorydb_page(acls, params)
    return ActionResult({"ACLs": [a.to_dict(backend) for a in page], **token})


def _update_acl(self):
    backend = self.memorydb_backend
    params = _memorydb_params(self)
    acl = _memorydb_acl(backend, params.get("ACLName"))
    if acl.name == MEMORYDB_OPEN_ACCESS:
        raise MemoryDBInvalidParameterValue("The open-access ACL cannot be modified.")
    add, remove = list(params.get("UserNamesToAdd") or []), list(params.get("UserNamesToRemove") or [])
    if not add and not remove:
        raise InvalidParameterCombinationException("At least one of UserNamesToAdd and UserNamesToRemove is required.")
    if set(add) & set(remove):
        raise InvalidParameterCombinationException("A user cannot be both added to and removed from an ACL.")
    _memorydb_known_users(backend, add)
    for name in add:
        if name in acl.user_names:
            raise DuplicateUserNameFault(f"User {name} is already a member of ACL {acl.name}.")
    for name in remove:
        if name not in acl.user_names:
            raise MemoryDBInvalidParameterValue(f"User {name} is not a member of ACL {acl.name}.")
    acl.user_names = [n for n in acl.user_names if n not in remove] + add
    return ActionResult({"ACL": acl.to_dict(backend)})


def _delete_acl(self):
    backend = self.memorydb_backend
    acl = _memorydb_acl(backend, _memorydb_params(self).get("ACLName"))
    if acl.name == MEMORYDB_OPEN_ACCESS:
        raise MemoryDBInvalidParameterValue("The open-access ACL cannot be deleted.")
    clusters = acl.clusters(backend)
    if clusters:
        raise InvalidACLStateFault(f"ACL {acl.name} is in use by cluster(s) {', '.join(clusters)}.")
    acl.status = "deleting"
    del backend.memorydb_acls[acl.name]
    backend.tagger.delete_all_tags_for_resource(acl.arn)
    return ActionResult({"ACL": acl.to_dict(backend)})


def _memorydb_check_cluster_acl(backend, acl_name: str | None, tls_enabled: bool | None) -> None:
    """A cluster's ACL exists, and one without TLS has `open-access`
    (moto replaced any other by it in silence)."""
    if not acl_name:
        raise MemoryDBInvalidParameterValue("ACLName is required.")
    _memorydb_acl(backend, acl_name)
    if tls_enabled is False and acl_name != MEMORYDB_OPEN_ACCESS:
        raise InvalidParameterCombinationException("A cluster without TLS can only use the open-access ACL.")


def _memorydb_check_replicas(count: int | None) -> None:
    if count is not None and not 0 <= count <= MEMORYDB_MAX_REPLICAS:
        raise MemoryDBInvalidParameterValue(
            f"The number of replicas per shard must be between 0 and {MEMORYDB_MAX_REPLICAS}."
        )


_original_memorydb_create_cluster = memorydb_models.MemoryDBBackend.create_cluster


def _memorydb_create_cluster(self, *args, **kwargs):
    if kwargs.get("cluster_name") not in self.clusters:  # else moto's ClusterAlreadyExistsFault
        _memorydb_check_cluster_acl(self, kwargs.get("acl_name"), kwargs.get("tls_enabled"))
        subnet_group = kwargs.get("subnet_group_name") or "default"
        if subnet_group not in self.subnet_groups:  # moto: a KeyError, HTTP 500
            raise SubnetGroupNotFoundFault(f"Subnet group {subnet_group} not found.")
        _memorydb_check_replicas(kwargs.get("num_replicas_per_shard"))
    return _original_memorydb_create_cluster(self, *args, **kwargs)


_original_memorydb_update_cluster = memorydb_models.MemoryDBBackend.update_cluster


def _memorydb_update_cluster(self, *args, **kwargs):
    cluster = self.clusters.get(kwargs.get("cluster_name"))
    if cluster is not None:
        if kwargs.get("acl_name") is not None:
            _memorydb_check_cluster_acl(self, kwargs["acl_name"], cluster.tls_enabled)
        _memorydb_check_replicas((kwargs.get("replica_configuration") or {}).get("ReplicaCount"))
    cluster = _original_memorydb_update_cluster(self, *args, **kwargs)
    _memorydb_cluster_derived(cluster)
    return cluster


_original_memorydb_cluster_init = memorydb_models.MemoryDBCluster.__init__


def _memorydb_cluster_init(self, *args, **kwargs):
    _original_memorydb_cluster_init(self, *args, **kwargs)
    if kwargs.get("num_replicas_per_shard") == 0:
        # moto's `or 1` made it one replica.
        self.num_replicas_per_shard = 0
        self.shards = self.get_shard_details()
    _memorydb_cluster_derived(self)


def _memorydb_cluster_derived(cluster) -> None:
    """What moto computes once from a cluster's settings and leaves stale
    when UpdateCluster changes them: AvailabilityMode (SingleAZ without
    replicas) and SecurityGroups."""
    cluster.availability_mode = "SingleAZ" if cluster.num_replicas_per_shard == 0 else "MultiAZ"
    cluster.security_groups = [{"SecurityGroupId": sg, "Status": "active"} for sg in cluster.security_group_ids or []]


_original_memorydb_shard_details = memorydb_models.MemoryDBCluster.get_shard_details


def _memorydb_shard_details(self) -> list[dict]:
    """moto's shards with the slots each serves (the 16384 split evenly, in
    order), instead of a random range."""
    shards = _original_memorydb_shard_details(self)
    for i, shard in enumerate(shards):
        shard["Slots"] = f"{i * SLOTS // len(shards)}-{(i + 1) * SLOTS // len(shards) - 1}"
    return shards


_original_memorydb_list_arns = memorydb_models.MemoryDBBackend._list_arns


def _memorydb_list_arns(self) -> list[str]:
    users = [u.arn for u in self.memorydb_users.values()]
    return _original_memorydb_list_arns(self) + users + [a.arn for a in self.memorydb_acls.values()]


def _memorydb_tagging(original):
    """ListTags, TagResource or UntagResource: an unknown user's or ACL's
    ARN is UserNotFoundFault or ACLNotFoundFault (moto would call it a
    cluster)."""

    def tagging(self, *args, **kwargs):
        arn = kwargs.get("resource_arn", args[0] if args else "") or ""
        kind, _, name = arn.split(":", 5)[-1].partition("/")
        if kind == "user":
            _memorydb_user(self, name)
        elif kind == "acl":
            _memorydb_acl(self, name)
        return original(self, *args, **kwargs)

    return tagging


_original_export_certificate = acm_models.AWSCertificateManagerBackend.export_certificate


def _export_certificate(self, certificate_arn, passphrase):
    bundle = self._certificates.get(certificate_arn)
    if bundle is None or bundle.type != "IMPORTED" or len(passphrase or "") < self.MIN_PASSPHRASE_LEN:
        # Not found, not imported or a short passphrase: moto's answer.
        return _original_export_certificate(self, certificate_arn, passphrase)
    bundle = self.get_certificate(certificate_arn)  # refuses an expired one, as moto's export does
    key = bundle.serialize_pk(base64.standard_b64decode(passphrase))
    return bundle.cert.decode(), bundle.chain.decode(), key


# ----- SQS: the same answers at a cost that does not grow with the backlog


def _now_ms() -> float:
    # moto's unix_time_millis() without a datetime per call: the same epoch
    # milliseconds.
    return time.time() * 1000.0


def _message_visible(self) -> bool:
    return _now_ms() > self.visible_at


def _message_delayed(self) -> bool:
    return _now_ms() < self.delayed_until


def _queue_messages(self) -> list:
    now = _now_ms()
    return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]


_sending = threading.local()


def _counting(original):
    """A message count that answers 0 inside SendMessage, which reads the
    queue's attributes only for its ContentBasedDeduplication flag."""

    def count(self):
        return 0 if getattr(_sending, "active", False) else original.fget(self)

    return property(count)


_original_send_message = sqs_models.SQSBackend.send_message
_original_delete_message = sqs_models.Queue.delete_message
_original_receive_message = sqs_models.SQSBackend.receive_message


def _send_message(self, *args, **kwargs):
    _sending.active = True
    try:
        return _original_send_message(self, *args, **kwargs)
    finally:
        _sending.active = False


def _receive_message(self, queue_name, *args, **kwargs):
    # A long poll waits on the lock's condition, which releases it meanwhile.
    with self.get_queue(queue_name)._messages_lock:
        return _original_receive_message(self, queue_name, *args, **kwargs)


def _delete_message(self, receipt_handle):
    with self._messages_lock:
        return _original_delete_message(self, receipt_handle)


def _delete_message_batch(self, queue_name, receipts):
    queue = self.get_queue(queue_name)
    ids = {entry["ReceiptHandle"]: entry["Id"] for entry in receipts}
    # Under the lock that a send appends under: the list is rebuilt, and a
    # message appended or deleted meanwhile would be lost or come back.
    with queue._messages_lock:
        deleted = {handle for handle in ids if handle in queue.deleted_messages}
        kept = []
        for message in queue._messages:
            handles = message.all_receipt_handles
            if any(handle in ids for handle in handles):
                deleted.update(handle for handle in handles if handle in ids)
                queue.pending_messages.discard(message)
                queue.deleted_messages.update(handles)
                continue
            kept.append(message)
        queue._messages = kept
    success, errors = [], []
    for entry in receipts:
        handle = entry["ReceiptHandle"]
        if handle in deleted:
            success.append(entry["Id"])
        else:
            errors.append(
                {
                    "Id": entry["Id"],
                    "SenderFault": True,
                    "Code": "ReceiptHandleIsInvalid",
                    "Message": f'The input receipt handle "{handle}" is not a valid receipt handle.',
                }
            )
    return success, errors


# ----- Price List Query API (pricing): GetProducts from price_list.json

PRICE_LIST_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "price_list.json")
PRICING_PAGE_SIZE = int(os.environ.get("MOTO_PRICING_PAGE_SIZE", "100"))
_price_list: list[dict] | None = None
_price_list_lock = threading.Lock()


class PricingError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _price_documents() -> list[dict]:
    global _price_list
    with _price_list_lock:
        if _price_list is None:
            with open(PRICE_LIST_FILE) as f:
                _price_list = json.load(f)["PriceList"]
        return _price_list


def _price_filter_matches(product: dict, flt: dict) -> bool:
    kind, field, value = flt.get("Type"), flt.get("Field"), flt.get("Value")
    if not field or value is None:
        raise PricingError("InvalidParameterException", "A filter needs a Field and a Value.")
    if field == "productFamily":
        have = product.get("productFamily")
    else:
        have = product.get("attributes", {}).get(field)
    if kind in ("TERM_MATCH", "EQUALS"):
        return have == value
    if kind == "CONTAINS":
        return have is not None and value in have
    if kind in ("ANY_OF", "NONE_OF"):
        listed = [v.strip() for v in value.split(",")]
        return (have in listed) == (kind == "ANY_OF")
    raise PricingError("InvalidParameterException", f"Unsupported filter type {kind!r}.")


def _price_query_token(body: dict) -> str:
    query = json.dumps([body.get("ServiceCode"), body.get("Filters") or []], sort_keys=True)
    return base64.urlsafe_b64encode(query.encode()).decode()[:48]


def _get_products(body: dict) -> dict:
    service = body.get("ServiceCode")
    if not service:
        raise PricingError("InvalidParameterException", "ServiceCode is required.")
    if body.get("FormatVersion", "aws_v1") != "aws_v1":
        raise PricingError("InvalidParameterException", f"Unsupported FormatVersion {body['FormatVersion']!r}.")
    limit = body.get("MaxResults", 100)
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise PricingError("InvalidParameterException", "MaxResults must be between 1 and 100.")
    limit = min(limit, PRICING_PAGE_SIZE)
    documents = [d for d in _price_documents() if d["serviceCode"] == service]
    if not documents:
        raise PricingError("NotFoundException", f"The service code {service} was not found.", 404)
    filters = body.get("Filters") or []
    found = [d for d in documents if all(_price_filter_matches(d["product"], f) for f in filters)]
    start = 0
    token = body.get("NextToken")
    if token:
        query, _, offset = token.rpartition(".")
        if query != _price_query_token(body) or not offset.isdigit() or int(offset) > len(found):
            raise PricingError("InvalidNextTokenException", "The NextToken is not valid for this query.")
        start = int(offset)
    page = found[start : start + limit]
    answer = {"FormatVersion": "aws_v1", "PriceList": [json.dumps(d, separators=(",", ":")) for d in page]}
    if start + limit < len(found):
        answer["NextToken"] = f"{_price_query_token(body)}.{start + limit}"
    return answer


def _pricing(environ, start_response, action: str):
    request_id = str(uuid.uuid4())
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size) if size else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise PricingError("SerializationException", "The request body is not JSON.")
        if action != "GetProducts":
            raise PricingError("UnknownOperationException", f"{action} is not emulated here.")
        status, payload = "200 OK", _get_products(body)
        headers = [("x-amzn-RequestId", request_id)]
    except PricingError as e:
        reason = {400: "Bad Request", 404: "Not Found"}.get(e.status, "Error")
        status, payload = f"{e.status} {reason}", {"__type": e.code, "message": e.message}
        headers = [("x-amzn-RequestId", request_id), ("x-amzn-ErrorType", e.code)]
    data = json.dumps(payload).encode()
    headers += [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))]
    start_response(status, headers)
    return [data]


_original_dispatch = DomainDispatcherApplication.__call__


def _dispatch(self, environ, start_response):
    # moto has no pricing backend, so its dispatcher would hand these to
    # another service: they are answered before it looks.
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("AWSPriceListService."):
        return _pricing(environ, start_response, target.split(".", 1)[1])
    return _original_dispatch(self, environ, start_response)


DomainDispatcherApplication.__call__ = _dispatch
acm_models.AWSCertificateManagerBackend.export_certificate = _export_certificate
imds_responses.InstanceMetadataResponse.metadata_response = staticmethod(_metadata_response)
elasticache_models.ReplicationGroup._set_node_members_clusters_disabled = _members_disabled
elasticache_models.ElastiCacheBackend.__init__ = _elasticache_init
elasticache_models.ElastiCacheBackend.create_replication_group = _create_replication_group
elasticache_models.ElastiCacheBackend.delete_replication_group = _delete_replication_group
elasticache_models.ElastiCacheBackend.describe_cache_clusters = _describe_cache_clusters
elasticache_models.CacheCluster.cache_parameter_group = property(_cluster_parameter_group)
elasticache_models.CacheCluster.security_groups = property(_cluster_security_groups)
elasticache_responses.ElastiCacheResponse.create_cache_parameter_group = _create_cache_parameter_group
elasticache_responses.ElastiCacheResponse.describe_cache_parameter_groups = _describe_cache_parameter_groups
elasticache_responses.ElastiCacheResponse.modify_cache_parameter_group = _modify_cache_parameter_group
elasticache_responses.ElastiCacheResponse.reset_cache_parameter_group = _reset_cache_parameter_group
elasticache_responses.ElastiCacheResponse.describe_cache_parameters = _describe_cache_parameters
elasticache_responses.ElastiCacheResponse.delete_cache_parameter_group = _delete_cache_parameter_group
elasticache_responses.ElastiCacheResponse.modify_replication_group = _modify_replication_group
elasticache_responses.ElastiCacheResponse.increase_replica_count = _increase_replica_count
elasticache_responses.ElastiCacheResponse.decrease_replica_count = _decrease_replica_count
memorydb_models.MemoryDBBackend.__init__ = _memorydb_init
memorydb_models.MemoryDBBackend.create_cluster = _memorydb_create_cluster
memorydb_models.MemoryDBBackend.update_cluster = _memorydb_update_cluster
memorydb_models.MemoryDBBackend._list_arns = _memorydb_list_arns
for _name in ("list_tags", "tag_resource", "untag_resource"):
    setattr(memorydb_models.MemoryDBBackend, _name, _memorydb_tagging(getattr(memorydb_models.MemoryDBBackend, _name)))
memorydb_models.MemoryDBCluster.__init__ = _memorydb_cluster_init
memorydb_models.MemoryDBCluster.get_shard_details = _memorydb_shard_details
memorydb_responses.MemoryDBResponse.create_user = _create_user
memorydb_responses.MemoryDBResponse.describe_users = _describe_users
memorydb_responses.MemoryDBResponse.update_user = _update_user
memorydb_responses.MemoryDBResponse.delete_user = _delete_user
memorydb_responses.MemoryDBResponse.create_acl = _create_acl
# moto dispatches DescribeACLs to the snake case of its name as it splits it.
memorydb_responses.MemoryDBResponse.describe_ac_ls = _describe_acls
memorydb_responses.MemoryDBResponse.update_acl = _update_acl
memorydb_responses.MemoryDBResponse.delete_acl = _delete_acl
imds_urls.url_paths = {path: _metadata_response for path in imds_urls.url_paths}
launch_templates.LaunchTemplateVersion.__init__ = _version_init
asg_models.InstanceState.__init__ = _instance_state_init
asg_models.InstanceState.launch_template = property(_instance_launch_template)
asg_responses.AutoScalingResponse.start_instance_refresh = _start_instance_refresh
asg_responses.AutoScalingResponse.describe_instance_refreshes = _describe_instance_refreshes
asg_responses.AutoScalingResponse.cancel_instance_refresh = _cancel_instance_refresh
sqs_models.Message.visible = property(_message_visible)
sqs_models.Message.delayed = property(_message_delayed)
sqs_models.Queue.messages = property(_queue_messages)
for _name in (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
):
    setattr(sqs_models.Queue, _name, _counting(getattr(sqs_models.Queue, _name)))
sqs_models.SQSBackend.send_message = _send_message
sqs_models.SQSBackend.delete_message_batch = _delete_message_batch
sqs_models.Queue.delete_message = _delete_message
sqs_models.SQSBackend.receive_message = _receive_message

if __name__ == "__main__":
    sys.exit(main())
