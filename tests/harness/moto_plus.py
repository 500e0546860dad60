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
- ACM ExportCertificate exports an IMPORTED certificate too (certificate,
  chain and the private key encrypted with the passphrase), which ACM and
  moto refuse unless the certificate was made exportable: on AWS a load
  balancer gets the key of its listener's certificate from ACM internally,
  and here the AWS data plane (`dataplane/dataplane.py`), which plays the
  load balancer, can only get it through the API. Every other certificate
  exports (or is refused) as before.
"""

import base64
import os
import sys
import threading
import uuid

from moto.acm import models as acm_models
from moto.autoscaling import models as asg_models
from moto.autoscaling import responses as asg_responses
from moto.autoscaling.exceptions import AutoscalingClientError
from moto.core.responses import ActionResult
from moto.core.types import Base64EncodedString
from moto.core.utils import utcnow
from moto.ec2.models import launch_templates
from moto.elasticache import models as elasticache_models
from moto.instance_metadata import responses as imds_responses
from moto.instance_metadata import urls as imds_urls
from moto.server import main

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


class InstanceRefreshInProgress(AutoscalingClientError):
    code = "InstanceRefreshInProgress"


class ActiveInstanceRefreshNotFound(AutoscalingClientError):
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


_original_export_certificate = acm_models.AWSCertificateManagerBackend.export_certificate


def _export_certificate(self, certificate_arn, passphrase):
    bundle = self._certificates.get(certificate_arn)
    if bundle is None or bundle.type != "IMPORTED" or len(passphrase or "") < self.MIN_PASSPHRASE_LEN:
        # Not found, not imported or a short passphrase: moto's answer.
        return _original_export_certificate(self, certificate_arn, passphrase)
    bundle = self.get_certificate(certificate_arn)  # refuses an expired one, as moto's export does
    key = bundle.serialize_pk(base64.standard_b64decode(passphrase))
    return bundle.cert.decode(), bundle.chain.decode(), key


acm_models.AWSCertificateManagerBackend.export_certificate = _export_certificate
imds_responses.InstanceMetadataResponse.metadata_response = staticmethod(_metadata_response)
elasticache_models.ReplicationGroup._set_node_members_clusters_disabled = _members_disabled
imds_urls.url_paths = {path: _metadata_response for path in imds_urls.url_paths}
launch_templates.LaunchTemplateVersion.__init__ = _version_init
asg_models.InstanceState.__init__ = _instance_state_init
asg_models.InstanceState.launch_template = property(_instance_launch_template)
asg_responses.AutoScalingResponse.start_instance_refresh = _start_instance_refresh
asg_responses.AutoScalingResponse.describe_instance_refreshes = _describe_instance_refreshes
asg_responses.AutoScalingResponse.cancel_instance_refresh = _cancel_instance_refresh

if __name__ == "__main__":
    sys.exit(main())
