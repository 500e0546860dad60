//! Elastic Load Balancing v2: the event API's load balancer (application
//! for `public`, network for `vpc_link`), its target group and listener.
//!
//! Load balancers and target groups are found by name. A listener has no
//! name in AWS: the graph calls it `<load balancer name>-<port>`, and it is
//! found as the listener on that port of that load balancer, else as the
//! one tagged with its logical id (a port the spec changed is modified in
//! place). A listener
//! that publishes only some paths answers 404 by default and forwards those
//! paths by one rule of its own (priority [`RULE_PRIORITY`]), read and
//! written with the listener.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action as ListenerAction, ActionTypeEnum, Certificate, FixedResponseActionConfig,
    IpAddressType, LoadBalancerSchemeEnum, LoadBalancerTypeEnum, PathPatternConditionConfig,
    ProtocolEnum, Rule, RuleCondition, Tag, TargetGroupAttribute, TargetTypeEnum,
};

use super::{
    Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, not_found_is_none, outputs,
    reread, subject_of,
};
use crate::aws::error::{AwsError, Result, Subject};
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{Attributes, HealthCheck, Listener, LoadBalancer, TAG_RESOURCE, TargetGroup};

/// The priority of the listener rule that forwards the published paths.
const RULE_PRIORITY: i32 = 10;
/// What a path the listener does not publish answers.
const NOT_PUBLISHED: &str = r#"{"error":"not found: this path is not published"}"#;

/// The target group attribute holding the deregistration delay.
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

fn elb_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Whether a create failed because the name is taken (a re-run after a
/// crash): ELBv2 says `Duplicate...` rather than `...AlreadyExists`.
fn is_duplicate(e: &AwsError) -> bool {
    e.is_already_exists() || e.code().is_some_and(|c| c.starts_with("Duplicate"))
}

/// What follows `marker` in an ARN (`app/name/id`, `targetgroup/name/id`):
/// the form CloudWatch dimensions and scaling policies use.
fn arn_suffix(arn: &str, marker: &str) -> String {
    arn.split_once(marker)
        .map_or_else(|| arn.to_string(), |(_, rest)| rest.to_string())
}

/// The tags of one ELBv2 resource.
async fn read_tags(ctx: &Ctx, t: &Target, arn: &str) -> Result<BTreeMap<String, String>> {
    let out = ctx
        .aws
        .elbv2()
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeTags"))?;
    Ok(out
        .tag_descriptions()
        .iter()
        .filter(|d| d.resource_arn() == Some(arn))
        .flat_map(|d| d.tags())
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect())
}

/// Brings the tags of `arn` to the desired ones.
async fn apply_tags(ctx: &Ctx, work: &Work, arn: &str) -> Result<()> {
    let elb = ctx.aws.elbv2();
    let (set, remove) = work.tag_changes();
    if !set.is_empty() {
        elb.add_tags()
            .resource_arns(arn)
            .set_tags(Some(elb_tags(&set)))
            .send()
            .await
            .map_err(api!(work.subject(), "AddTags"))?;
    }
    if !remove.is_empty() {
        elb.remove_tags()
            .resource_arns(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(work.subject(), "RemoveTags"))?;
    }
    Ok(())
}

/// The observed resource's output, or a bug report.
fn observed_output<'a>(
    work: &'a Work,
    name: &'static str,
    action: &'static str,
) -> Result<&'a str> {
    work.observed
        .as_ref()
        .and_then(|o| o.outputs.get(name))
        .map(String::as_str)
        .ok_or_else(|| incomplete(&work.target(), action, name))
}

// --- load balancer ---------------------------------------------------------

pub(crate) async fn read_load_balancer(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let got = ctx
        .aws
        .elbv2()
        .describe_load_balancers()
        .names(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeLoadBalancers"));
    let Some(got) = not_found_is_none(got)? else {
        return Ok(None);
    };
    let Some(lb) = got
        .load_balancers()
        .iter()
        .find(|lb| lb.load_balancer_name() == Some(t.name.as_str()))
    else {
        return Ok(None);
    };
    let arn = lb
        .load_balancer_arn()
        .ok_or_else(|| incomplete(t, "DescribeLoadBalancers", "LoadBalancerArn"))?
        .to_string();
    let mut subnets: Vec<String> = lb
        .availability_zones()
        .iter()
        .filter_map(|z| z.subnet_id().map(str::to_string))
        .collect();
    subnets.sort();
    let mut security_groups = lb.security_groups().to_vec();
    security_groups.sort();
    let attributes = Attributes::LoadBalancer(LoadBalancer {
        lb_type: lb
            .r#type()
            .map_or("application", |t| t.as_str())
            .to_string(),
        scheme: lb
            .scheme()
            .map_or("internet-facing", |s| s.as_str())
            .to_string(),
        subnets,
        security_groups,
    });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([
            ("arn_suffix", arn_suffix(&arn, ":loadbalancer/")),
            ("dns_name", lb.dns_name().unwrap_or_default().to_string()),
            ("arn", arn),
        ]),
    )))
}

pub(crate) async fn apply_load_balancer(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, LoadBalancer);
    let subject = work.subject();
    let elb = ctx.aws.elbv2();
    if work.action == Action::Create {
        let mut req = elb
            .create_load_balancer()
            .name(&work.desired.name)
            .r#type(LoadBalancerTypeEnum::from(desired.lb_type.as_str()))
            .scheme(LoadBalancerSchemeEnum::from(desired.scheme.as_str()))
            .ip_address_type(IpAddressType::Ipv4)
            .set_subnets(Some(desired.subnets.clone()))
            .set_tags(Some(elb_tags(&work.desired.tags)));
        // Network load balancers take no security groups here.
        if !desired.security_groups.is_empty() {
            req = req.set_security_groups(Some(desired.security_groups.clone()));
        }
        return match req
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateLoadBalancer"))
        {
            Ok(out) => {
                let lb = out.load_balancers().first().ok_or_else(|| {
                    incomplete(&work.target(), "CreateLoadBalancer", "LoadBalancers")
                })?;
                let arn = lb.load_balancer_arn().unwrap_or_default().to_string();
                Ok(outputs([
                    ("arn_suffix", arn_suffix(&arn, ":loadbalancer/")),
                    ("dns_name", lb.dns_name().unwrap_or_default().to_string()),
                    ("arn", arn),
                ]))
            }
            Err(e) if is_duplicate(&e) => {
                Box::pin(apply_load_balancer(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    let arn = observed_output(work, "arn", "DescribeLoadBalancers")?.to_string();
    if work.changed("subnets") {
        elb.set_subnets()
            .load_balancer_arn(&arn)
            .set_subnets(Some(desired.subnets.clone()))
            .send()
            .await
            .map_err(api!(subject.clone(), "SetSubnets"))?;
    }
    if work.changed("security_groups") && !desired.security_groups.is_empty() {
        elb.set_security_groups()
            .load_balancer_arn(&arn)
            .set_security_groups(Some(desired.security_groups.clone()))
            .send()
            .await
            .map_err(api!(subject.clone(), "SetSecurityGroups"))?;
    }
    apply_tags(ctx, work, &arn).await?;
    Ok(work
        .observed
        .as_ref()
        .map(|o| o.outputs.clone())
        .unwrap_or_default())
}

pub(crate) async fn delete_load_balancer(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .elbv2()
        .delete_load_balancer()
        .load_balancer_arn(super::output(o, "arn", "DeleteLoadBalancer")?)
        .send()
        .await
        .map_err(api!(subject_of(o), "DeleteLoadBalancer"))?;
    Ok(Deleted::Gone)
}

// --- target group ----------------------------------------------------------

pub(crate) async fn read_target_group(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let elb = ctx.aws.elbv2();
    let got = elb
        .describe_target_groups()
        .names(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeTargetGroups"));
    let Some(got) = not_found_is_none(got)? else {
        return Ok(None);
    };
    let Some(tg) = got
        .target_groups()
        .iter()
        .find(|tg| tg.target_group_name() == Some(t.name.as_str()))
    else {
        return Ok(None);
    };
    let arn = tg
        .target_group_arn()
        .ok_or_else(|| incomplete(t, "DescribeTargetGroups", "TargetGroupArn"))?
        .to_string();
    let attrs = elb
        .describe_target_group_attributes()
        .target_group_arn(&arn)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeTargetGroupAttributes"))?;
    let deregistration_delay_seconds = attrs
        .attributes()
        .iter()
        .find(|a| a.key() == Some(DEREGISTRATION_DELAY))
        .and_then(|a| a.value()?.parse().ok())
        // AWS's default when the attribute was never set.
        .unwrap_or(300);
    let number = |n: Option<i32>| n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    let attributes = Attributes::TargetGroup(TargetGroup {
        protocol: tg.protocol().map_or("", |p| p.as_str()).to_string(),
        port: tg.port().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
        target_type: tg
            .target_type()
            .map_or("instance", |t| t.as_str())
            .to_string(),
        vpc_id: tg.vpc_id().unwrap_or_default().to_string(),
        health_check: HealthCheck {
            protocol: tg
                .health_check_protocol()
                .map_or("", |p| p.as_str())
                .to_string(),
            path: tg.health_check_path().unwrap_or_default().to_string(),
            interval_seconds: number(tg.health_check_interval_seconds()),
            healthy_threshold: number(tg.healthy_threshold_count()),
            unhealthy_threshold: number(tg.unhealthy_threshold_count()),
        },
        deregistration_delay_seconds,
    });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([("arn_suffix", target_group_suffix(&arn)), ("arn", arn)]),
    )))
}

/// `targetgroup/name/id`: what follows the account in a target group ARN.
fn target_group_suffix(arn: &str) -> String {
    arn.rsplit_once(':')
        .map_or_else(|| arn.to_string(), |(_, s)| s.to_string())
}

async fn set_deregistration_delay(ctx: &Ctx, work: &Work, arn: &str, seconds: u32) -> Result<()> {
    ctx.aws
        .elbv2()
        .modify_target_group_attributes()
        .target_group_arn(arn)
        .attributes(
            TargetGroupAttribute::builder()
                .key(DEREGISTRATION_DELAY)
                .value(seconds.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(api!(work.subject(), "ModifyTargetGroupAttributes"))?;
    Ok(())
}

pub(crate) async fn apply_target_group(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, TargetGroup);
    let subject = work.subject();
    let elb = ctx.aws.elbv2();
    let hc = &desired.health_check;
    if work.action == Action::Create {
        let created = elb
            .create_target_group()
            .name(&work.desired.name)
            .protocol(ProtocolEnum::from(desired.protocol.as_str()))
            .port(i32::from(desired.port))
            .target_type(TargetTypeEnum::from(desired.target_type.as_str()))
            .vpc_id(&desired.vpc_id)
            .health_check_enabled(true)
            .health_check_protocol(ProtocolEnum::from(hc.protocol.as_str()))
            .health_check_path(&hc.path)
            .health_check_interval_seconds(hc.interval_seconds as i32)
            .healthy_threshold_count(hc.healthy_threshold as i32)
            .unhealthy_threshold_count(hc.unhealthy_threshold as i32)
            .set_tags(Some(elb_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateTargetGroup"));
        return match created {
            Ok(out) => {
                let arn = out
                    .target_groups()
                    .first()
                    .and_then(|tg| tg.target_group_arn())
                    .ok_or_else(|| {
                        incomplete(&work.target(), "CreateTargetGroup", "TargetGroupArn")
                    })?
                    .to_string();
                set_deregistration_delay(ctx, work, &arn, desired.deregistration_delay_seconds)
                    .await?;
                Ok(outputs([
                    ("arn_suffix", target_group_suffix(&arn)),
                    ("arn", arn),
                ]))
            }
            Err(e) if is_duplicate(&e) => {
                Box::pin(apply_target_group(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    let arn = observed_output(work, "arn", "DescribeTargetGroups")?.to_string();
    if work.changed("health_check") {
        elb.modify_target_group()
            .target_group_arn(&arn)
            .health_check_protocol(ProtocolEnum::from(hc.protocol.as_str()))
            .health_check_path(&hc.path)
            .health_check_interval_seconds(hc.interval_seconds as i32)
            .healthy_threshold_count(hc.healthy_threshold as i32)
            .unhealthy_threshold_count(hc.unhealthy_threshold as i32)
            .send()
            .await
            .map_err(api!(subject.clone(), "ModifyTargetGroup"))?;
    }
    if work.changed("deregistration_delay_seconds") {
        set_deregistration_delay(ctx, work, &arn, desired.deregistration_delay_seconds).await?;
    }
    apply_tags(ctx, work, &arn).await?;
    Ok(work
        .observed
        .as_ref()
        .map(|o| o.outputs.clone())
        .unwrap_or_default())
}

pub(crate) async fn delete_target_group(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .elbv2()
        .delete_target_group()
        .target_group_arn(super::output(o, "arn", "DeleteTargetGroup")?)
        .send()
        .await
        .map_err(api!(subject_of(o), "DeleteTargetGroup"))?;
    Ok(Deleted::Gone)
}

// --- listener --------------------------------------------------------------

/// `<load balancer name>-<port>` → the load balancer's name and the port.
fn listener_parts(name: &str) -> Option<(&str, i32)> {
    let (lb, port) = name.rsplit_once('-')?;
    Some((lb, port.parse().ok()?))
}

fn forward(target_group_arn: &str) -> ListenerAction {
    ListenerAction::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group_arn)
        .build()
}

fn not_published() -> ListenerAction {
    ListenerAction::builder()
        .r#type(ActionTypeEnum::FixedResponse)
        .fixed_response_config(
            FixedResponseActionConfig::builder()
                .status_code("404")
                .content_type("application/json")
                .message_body(NOT_PUBLISHED)
                .build(),
        )
        .build()
}

/// The listener's default action: forward everything, or 404 when a rule
/// forwards the published paths.
fn default_action(desired: &Listener) -> ListenerAction {
    if desired.paths.is_empty() {
        forward(&desired.target_group_arn)
    } else {
        not_published()
    }
}

fn paths_condition(paths: &[String]) -> RuleCondition {
    RuleCondition::builder()
        .field("path-pattern")
        .path_pattern_config(
            PathPatternConditionConfig::builder()
                .set_values(Some(paths.to_vec()))
                .build(),
        )
        .build()
}

/// The target group a forward action sends to.
fn forward_target(action: &ListenerAction) -> Option<String> {
    if action.r#type() != Some(&ActionTypeEnum::Forward) {
        return None;
    }
    action.target_group_arn().map(str::to_string).or_else(|| {
        action
            .forward_config()?
            .target_groups()
            .first()?
            .target_group_arn()
            .map(str::to_string)
    })
}

/// The path patterns of a rule's path condition.
fn rule_paths(rule: &Rule) -> Vec<String> {
    rule.conditions()
        .iter()
        .filter(|c| c.field() == Some("path-pattern"))
        .flat_map(|c| {
            c.path_pattern_config()
                .map(|p| p.values().to_vec())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| c.values().to_vec())
        })
        .collect()
}

/// The listener's own rule (the one at [`RULE_PRIORITY`]).
async fn own_rule(ctx: &Ctx, subject: &Subject, listener_arn: &str) -> Result<Option<Rule>> {
    let rules = ctx
        .aws
        .elbv2()
        .describe_rules()
        .listener_arn(listener_arn)
        .send()
        .await
        .map_err(|e| AwsError::api(subject.clone(), "DescribeRules", e))?;
    Ok(rules
        .rules()
        .iter()
        .find(|r| r.priority() == Some(RULE_PRIORITY.to_string().as_str()))
        .cloned())
}

pub(crate) async fn read_listener(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let Some((lb_name, port)) = listener_parts(&t.name) else {
        return Err(AwsError::Config(format!(
            "listener name `{}` is not `<load balancer>-<port>`",
            t.name
        )));
    };
    let elb = ctx.aws.elbv2();
    let lbs = elb
        .describe_load_balancers()
        .names(lb_name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeLoadBalancers"));
    let Some(lbs) = not_found_is_none(lbs)? else {
        return Ok(None);
    };
    let Some(lb_arn) = lbs
        .load_balancers()
        .iter()
        .find(|lb| lb.load_balancer_name() == Some(lb_name))
        .and_then(|lb| lb.load_balancer_arn())
        .map(str::to_string)
    else {
        return Ok(None);
    };
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&lb_arn)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeListeners"));
    let Some(listeners) = not_found_is_none(listeners)? else {
        return Ok(None);
    };
    // The listener on the name's port; else the one tagged as this
    // resource, on the port of an earlier spec (plain HTTP then HTTPS):
    // modified in place rather than left open beside a new one.
    let mut found = listeners
        .listeners()
        .iter()
        .find(|l| l.port() == Some(port));
    if found.is_none() {
        for other in listeners.listeners() {
            let Some(arn) = other.listener_arn() else {
                continue;
            };
            if read_tags(ctx, t, arn).await?.get(TAG_RESOURCE) == Some(&t.id.to_string()) {
                found = Some(other);
                break;
            }
        }
    }
    let Some(listener) = found else {
        return Ok(None);
    };
    let arn = listener
        .listener_arn()
        .ok_or_else(|| incomplete(t, "DescribeListeners", "ListenerArn"))?
        .to_string();
    let default_target = listener.default_actions().iter().find_map(forward_target);
    // Forwarding by default publishes every path; else the published paths
    // are those of the listener's own rule.
    let (target_group_arn, paths) = match default_target {
        Some(group) => (group, Vec::new()),
        None => match own_rule(ctx, &t.subject(), &arn).await? {
            Some(rule) => (
                rule.actions()
                    .iter()
                    .find_map(forward_target)
                    .unwrap_or_default(),
                rule_paths(&rule),
            ),
            None => (String::new(), Vec::new()),
        },
    };
    let protocol = listener.protocol().map_or("", |p| p.as_str()).to_string();
    // Only a TLS listener has a certificate and policy (some endpoints
    // report a default policy on any listener).
    let tls = matches!(protocol.as_str(), "HTTPS" | "TLS");
    let attributes = Attributes::Listener(Listener {
        load_balancer_arn: lb_arn,
        protocol,
        port: u16::try_from(port).unwrap_or(0),
        target_group_arn,
        certificate_arn: listener
            .certificates()
            .first()
            .and_then(|c| c.certificate_arn())
            .filter(|_| tls)
            .map(str::to_string),
        ssl_policy: listener.ssl_policy().filter(|_| tls).map(str::to_string),
        paths,
    });
    let tags = read_tags(ctx, t, &arn).await?;
    Ok(Some(t.observed(tags, attributes, outputs([("arn", arn)]))))
}

pub(crate) async fn apply_listener(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, Listener);
    let subject = work.subject();
    let elb = ctx.aws.elbv2();
    let certificates = desired
        .certificate_arn
        .as_ref()
        .map(|c| vec![Certificate::builder().certificate_arn(c).build()]);
    let (arn, out) = if work.action == Action::Create {
        let created = elb
            .create_listener()
            .load_balancer_arn(&desired.load_balancer_arn)
            .protocol(ProtocolEnum::from(desired.protocol.as_str()))
            .port(i32::from(desired.port))
            .set_certificates(certificates)
            .set_ssl_policy(desired.ssl_policy.clone())
            .default_actions(default_action(desired))
            .set_tags(Some(elb_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateListener"));
        match created {
            Ok(out) => {
                let arn = out
                    .listeners()
                    .first()
                    .and_then(|l| l.listener_arn())
                    .ok_or_else(|| incomplete(&work.target(), "CreateListener", "ListenerArn"))?
                    .to_string();
                (arn.clone(), outputs([("arn", arn)]))
            }
            Err(e) if is_duplicate(&e) => {
                return Box::pin(apply_listener(ctx, &reread(ctx, work).await?)).await;
            }
            Err(e) => return Err(e),
        }
    } else {
        let arn = observed_output(work, "arn", "DescribeListeners")?.to_string();
        if [
            "protocol",
            "port",
            "target_group_arn",
            "certificate_arn",
            "ssl_policy",
            "paths",
        ]
        .iter()
        .any(|field| work.changed(field))
        {
            elb.modify_listener()
                .listener_arn(&arn)
                .protocol(ProtocolEnum::from(desired.protocol.as_str()))
                .port(i32::from(desired.port))
                .set_certificates(certificates)
                .set_ssl_policy(desired.ssl_policy.clone())
                .default_actions(default_action(desired))
                .send()
                .await
                .map_err(api!(subject.clone(), "ModifyListener"))?;
        }
        apply_tags(ctx, work, &arn).await?;
        let out = work
            .observed
            .as_ref()
            .map(|o| o.outputs.clone())
            .unwrap_or_default();
        (arn, out)
    };
    put_rule(ctx, &subject, &arn, desired).await?;
    Ok(out)
}

/// Makes the listener's own rule forward exactly the published paths, or
/// removes it when the default action forwards every path.
async fn put_rule(ctx: &Ctx, subject: &Subject, arn: &str, desired: &Listener) -> Result<()> {
    let elb = ctx.aws.elbv2();
    let existing = own_rule(ctx, subject, arn).await?;
    match existing {
        None if desired.paths.is_empty() => {}
        Some(rule) if desired.paths.is_empty() => {
            if let Some(rule_arn) = rule.rule_arn() {
                elb.delete_rule()
                    .rule_arn(rule_arn)
                    .send()
                    .await
                    .map_err(|e| AwsError::api(subject.clone(), "DeleteRule", e))?;
            }
        }
        Some(rule)
            if rule_paths(&rule) == desired.paths
                && rule.actions().iter().find_map(forward_target).as_deref()
                    == Some(desired.target_group_arn.as_str()) => {}
        Some(rule) => {
            let rule_arn = rule.rule_arn().ok_or_else(|| AwsError::Incomplete {
                subject: subject.clone(),
                action: "DescribeRules",
                missing: "RuleArn",
            })?;
            elb.modify_rule()
                .rule_arn(rule_arn)
                .conditions(paths_condition(&desired.paths))
                .actions(forward(&desired.target_group_arn))
                .send()
                .await
                .map_err(|e| AwsError::api(subject.clone(), "ModifyRule", e))?;
        }
        None => {
            elb.create_rule()
                .listener_arn(arn)
                .priority(RULE_PRIORITY)
                .conditions(paths_condition(&desired.paths))
                .actions(forward(&desired.target_group_arn))
                .send()
                .await
                .map_err(|e| AwsError::api(subject.clone(), "CreateRule", e))?;
        }
    }
    Ok(())
}

pub(crate) async fn delete_listener(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .elbv2()
        .delete_listener()
        .listener_arn(super::output(o, "arn", "DeleteListener")?)
        .send()
        .await
        .map_err(api!(subject_of(o), "DeleteListener"))?;
    Ok(Deleted::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_suffixes_and_listener_names() {
        assert_eq!(
            arn_suffix(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/demo-api/50dc6c495c0c9188",
                ":loadbalancer/"
            ),
            "app/demo-api/50dc6c495c0c9188"
        );
        assert_eq!(listener_parts("demo-api-80"), Some(("demo-api", 80)));
        assert_eq!(listener_parts("demo"), None);
    }
}
