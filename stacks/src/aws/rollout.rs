//! Executor hosts on the group's launch template version. A host boots once
//! from its launch template's user data, so a changed template (a new
//! engine image, executor settings) reaches no running host by itself:
//! after applying, `up` starts an instance refresh that replaces the hosts
//! launched from older versions, new hosts first (minimum healthy 100 %,
//! maximum healthy 200 %, hosts already on the version skipped), and the
//! executors' wait lasts until none is left. The canary then checks that
//! the host which ran its step is one of the group's on that version
//! ([`host_instance`]).

use std::time::SystemTime;

use aws_sdk_autoscaling::types::{InstanceRefreshStatus, RefreshPreferences};
use serde::Serialize;

use super::context::Aws;
use super::error::{AwsError, Subject};
use super::wait::GroupState;
use crate::progress::Progress;

/// An instance refresh of the executors' group.
#[derive(Debug, Clone, Serialize)]
pub struct Refresh {
    /// Its id.
    pub id: String,
    /// `Pending`, `InProgress`, `Successful`, `Failed`, `Cancelled`, ...
    pub status: String,
    /// How far it got, in percent.
    pub percentage: Option<i32>,
    /// Why it ended as it did, when AWS says.
    pub reason: Option<String>,
    /// When it started.
    #[serde(skip)]
    pub started: Option<SystemTime>,
}

impl Refresh {
    /// Still replacing hosts.
    pub fn active(&self) -> bool {
        matches!(
            self.status.as_str(),
            "Pending" | "InProgress" | "Cancelling" | "RollbackInProgress" | "Baking"
        )
    }

    /// Ended without replacing every host.
    pub fn failed(&self) -> bool {
        matches!(
            self.status.as_str(),
            "Failed" | "Cancelled" | "RollbackSuccessful" | "RollbackFailed"
        )
    }

    /// `instance refresh abc InProgress (40 %)`.
    pub fn describe(&self) -> String {
        let mut s = format!("instance refresh {} {}", self.id, self.status);
        if let Some(p) = self.percentage.filter(|_| self.active()) {
            s.push_str(&format!(" ({p} %)"));
        }
        if let Some(r) = self.reason.as_deref().filter(|r| !r.is_empty()) {
            s.push_str(&format!(": {r}"));
        }
        s
    }
}

fn subject(group: &str) -> Subject {
    Subject::other("auto scaling group", group)
}

/// The group's most recent instance refresh, if it ever had one.
pub async fn latest_refresh(aws: &Aws, group: &str) -> Result<Option<Refresh>, AwsError> {
    let out = aws
        .autoscaling()
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .max_records(1)
        .send()
        .await
        .map_err(|e| AwsError::api(subject(group), "DescribeInstanceRefreshes", e))?;
    Ok(out
        .instance_refreshes
        .unwrap_or_default()
        .into_iter()
        .max_by_key(|r| r.start_time.map(|t| t.secs()))
        .map(|r| Refresh {
            id: r.instance_refresh_id.unwrap_or_default(),
            status: r
                .status
                .as_ref()
                .map_or_else(|| "unknown".into(), |s| s.as_str().to_string()),
            percentage: r.percentage_complete,
            reason: r.status_reason,
            started: r.start_time.and_then(|t| SystemTime::try_from(t).ok()),
        }))
}

/// Starts replacing the group's hosts of older launch template versions
/// when there are any (no write otherwise); a refresh already under way is
/// waited for instead of started again. Returns the refresh.
pub async fn roll(
    aws: &Aws,
    group: &str,
    progress: &dyn Progress,
) -> Result<Option<Refresh>, AwsError> {
    let Some(state) = super::wait::group_state(aws, group).await? else {
        return Ok(None);
    };
    if state.outdated == 0 {
        return Ok(None);
    }
    start(aws, group, &state, progress).await.map(Some)
}

async fn start(
    aws: &Aws,
    group: &str,
    state: &GroupState,
    progress: &dyn Progress,
) -> Result<Refresh, AwsError> {
    let key = "autoscaling.group.executors.refresh";
    super::lock::check_held()?;
    let version = state.launch_template_version.as_deref().unwrap_or("latest");
    let preferences = RefreshPreferences::builder()
        .skip_matching(true)
        .min_healthy_percentage(100)
        .max_healthy_percentage(200)
        .build();
    let started = aws
        .autoscaling()
        .start_instance_refresh()
        .auto_scaling_group_name(group)
        .preferences(preferences)
        .send()
        .await
        .map_err(|e| AwsError::api(subject(group), "StartInstanceRefresh", e));
    match started {
        Ok(out) => {
            let id = out.instance_refresh_id.unwrap_or_default();
            progress.ok(
                key,
                &format!(
                    "executors: instance refresh {id} replaces {} host(s) with hosts of launch \
                     template version {version}",
                    state.outdated
                ),
            );
            Ok(Refresh {
                id,
                status: InstanceRefreshStatus::Pending.as_str().to_string(),
                percentage: Some(0),
                reason: None,
                started: Some(SystemTime::now()),
            })
        }
        Err(e) if e.code() == Some("InstanceRefreshInProgress") => {
            let refresh = latest_refresh(aws, group).await?.ok_or(e)?;
            progress.info(&format!(
                "executors: {} is under way; waiting for it",
                refresh.describe()
            ));
            Ok(refresh)
        }
        Err(e) => {
            progress.fail(key, &e.to_string());
            Err(e)
        }
    }
}

/// The group's instance a host name belongs to, and the launch template
/// version it was launched from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostInstance {
    /// The host name the executor recorded.
    pub host: String,
    /// The EC2 instance.
    pub instance_id: String,
    /// The launch template version it was launched from.
    pub launch_template_version: Option<String>,
}

/// The group's instance a host name belongs to, if any, and the version
/// the group launches now (both from one read of the group).
#[derive(Debug, Clone)]
pub struct HostLookup {
    /// The instance, when one of the group's has that host name.
    pub instance: Option<HostInstance>,
    /// The launch template version the group launches.
    pub group_version: Option<String>,
}

/// Finds the instance of `group` whose private DNS name (or instance id) is
/// `host`.
pub async fn host_instance(aws: &Aws, group: &str, host: &str) -> Result<HostLookup, AwsError> {
    let Some(g) = super::wait::describe_group(aws, group).await? else {
        return Ok(HostLookup {
            instance: None,
            group_version: None,
        });
    };
    let group_version = GroupState::of(&g).launch_template_version;
    let instances: Vec<(&str, Option<&str>)> = g
        .instances()
        .iter()
        .filter_map(|i| Some((i.instance_id()?, super::wait::instance_version(i))))
        .collect();
    if instances.is_empty() {
        return Ok(HostLookup {
            instance: None,
            group_version,
        });
    }
    let described = aws
        .ec2()
        .describe_instances()
        .set_instance_ids(Some(
            instances.iter().map(|(id, _)| id.to_string()).collect(),
        ))
        .send()
        .await
        .map_err(|e| AwsError::api(subject(group), "DescribeInstances", e))?;
    let label = |name: &str| name.split('.').next().unwrap_or(name).to_string();
    let wanted = label(host);
    let found = described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| {
            let dns = i.private_dns_name().unwrap_or_default();
            (!dns.is_empty() && (dns == host || label(dns) == wanted))
                || i.instance_id() == Some(wanted.as_str())
        })
        .and_then(|i| i.instance_id());
    let instance = found.map(|id| HostInstance {
        host: host.to_string(),
        instance_id: id.to_string(),
        launch_template_version: instances
            .iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, v)| v.map(str::to_string)),
    });
    Ok(HostLookup {
        instance,
        group_version,
    })
}
