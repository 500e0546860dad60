//! IAM: roles (trust policy, description, tags), their inline policies and
//! the executors' instance profile. IAM returns policy documents
//! URL-encoded and in any of JSON's equivalent shapes (a single action as a
//! string, ...): they are parsed into the graph's [`PolicyDocument`].

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, not_found_is_none, outputs,
    reread,
};
use crate::aws::error::Result;
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{
    Attributes, IamInstanceProfile, IamRole, IamRolePolicy, PolicyDocument, Statement, TAG_STACK,
};

/// Decodes `%XX` escapes (IAM's URL-encoded documents).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Parses a policy document as IAM returns it (URL-encoded or not).
pub(crate) fn parse_document(text: &str) -> PolicyDocument {
    let decoded = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        percent_decode(text)
    };
    let value: Value = serde_json::from_str(&decoded).unwrap_or(Value::Null);
    let statements = match value.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        _ => Vec::new(),
    };
    PolicyDocument {
        version: value
            .get("Version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        statement: statements
            .iter()
            .map(|s| Statement {
                sid: s.get("Sid").and_then(Value::as_str).map(str::to_string),
                effect: s
                    .get("Effect")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                principal: s.get("Principal").and_then(Value::as_object).map(|p| {
                    p.iter()
                        .map(|(k, v)| (k.clone(), strings(Some(v)).join(",")))
                        .collect()
                }),
                action: strings(s.get("Action")),
                resource: strings(s.get("Resource")),
            })
            .collect(),
    }
}

fn document_json(doc: &PolicyDocument) -> String {
    serde_json::to_string(doc).expect("policy documents serialize")
}

fn iam_tags(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_iam::types::Tag> {
    tags.iter()
        .filter_map(|(k, v)| {
            aws_sdk_iam::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .ok()
        })
        .collect()
}

fn tags_of(tags: &[aws_sdk_iam::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect()
}

pub(crate) async fn read_role(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let iam = ctx.aws.iam();
    let got = iam
        .get_role()
        .role_name(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "GetRole"));
    let Some(got) = not_found_is_none(got)? else {
        return Ok(None);
    };
    let role = got.role.ok_or_else(|| incomplete(t, "GetRole", "Role"))?;
    let tags = iam
        .list_role_tags()
        .role_name(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "ListRoleTags"))?;
    let attributes = Attributes::IamRole(IamRole {
        description: role.description.clone().unwrap_or_default(),
        assume_role_policy: parse_document(role.assume_role_policy_document().unwrap_or("{}")),
    });
    Ok(Some(t.observed(
        tags_of(tags.tags()),
        attributes,
        outputs([("arn", role.arn.clone()), ("name", role.role_name.clone())]),
    )))
}

pub(crate) async fn apply_role(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, IamRole);
    let subject = work.subject();
    let iam = ctx.aws.iam();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = iam
            .create_role()
            .role_name(name)
            .description(&desired.description)
            .assume_role_policy_document(document_json(&desired.assume_role_policy))
            .set_tags(Some(iam_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateRole"));
        return match created {
            Ok(out) => {
                let role = out
                    .role
                    .ok_or_else(|| incomplete(&work.target(), "CreateRole", "Role"))?;
                Ok(outputs([("arn", role.arn), ("name", role.role_name)]))
            }
            Err(e) if e.is_already_exists() => {
                Box::pin(apply_role(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "GetRole", "the role"))?;
    if work.changed("assume_role_policy") {
        iam.update_assume_role_policy()
            .role_name(name)
            .policy_document(document_json(&desired.assume_role_policy))
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateAssumeRolePolicy"))?;
    }
    if work.changed("description") {
        iam.update_role()
            .role_name(name)
            .description(&desired.description)
            .send()
            .await
            .map_err(api!(subject.clone(), "UpdateRole"))?;
    }
    let (set, remove) = work.tag_changes();
    if !set.is_empty() {
        iam.tag_role()
            .role_name(name)
            .set_tags(Some(iam_tags(&set)))
            .send()
            .await
            .map_err(api!(subject.clone(), "TagRole"))?;
    }
    if !remove.is_empty() {
        iam.untag_role()
            .role_name(name)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(subject.clone(), "UntagRole"))?;
    }
    Ok(observed.outputs.clone())
}

pub(crate) async fn read_role_policy(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    // The inline policy is named after its role (see the graph's table).
    let got = ctx
        .aws
        .iam()
        .get_role_policy()
        .role_name(&t.name)
        .policy_name(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "GetRolePolicy"));
    let Some(got) = not_found_is_none(got)? else {
        return Ok(None);
    };
    let attributes = Attributes::IamRolePolicy(IamRolePolicy {
        role_name: got.role_name.clone(),
        document: parse_document(&got.policy_document),
    });
    Ok(Some(t.observed(
        BTreeMap::new(),
        attributes,
        Outputs::new(),
    )))
}

pub(crate) async fn apply_role_policy(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, IamRolePolicy);
    // PutRolePolicy creates or replaces: one call for every action.
    ctx.aws
        .iam()
        .put_role_policy()
        .role_name(&desired.role_name)
        .policy_name(&work.desired.name)
        .policy_document(document_json(&desired.document))
        .send()
        .await
        .map_err(api!(work.subject(), "PutRolePolicy"))?;
    Ok(Outputs::new())
}

pub(crate) async fn read_instance_profile(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let iam = ctx.aws.iam();
    let got = iam
        .get_instance_profile()
        .instance_profile_name(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "GetInstanceProfile"));
    let Some(got) = not_found_is_none(got)? else {
        return Ok(None);
    };
    let profile = got
        .instance_profile
        .ok_or_else(|| incomplete(t, "GetInstanceProfile", "InstanceProfile"))?;
    // GetInstanceProfile carries the tags (no ListInstanceProfileTags call).
    let attributes = Attributes::IamInstanceProfile(IamInstanceProfile {
        role_name: profile
            .roles()
            .first()
            .map(|r| r.role_name.clone())
            .unwrap_or_default(),
    });
    Ok(Some(t.observed(
        tags_of(profile.tags()),
        attributes,
        outputs([
            ("arn", profile.arn.clone()),
            ("name", profile.instance_profile_name.clone()),
        ]),
    )))
}

pub(crate) async fn apply_instance_profile(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, IamInstanceProfile);
    let subject = work.subject();
    let iam = ctx.aws.iam();
    let name = &work.desired.name;
    if work.action == Action::Create {
        let created = iam
            .create_instance_profile()
            .instance_profile_name(name)
            .set_tags(Some(iam_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateInstanceProfile"));
        match created {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        // Adding the role is the second step: read back what a crashed
        // run may have left.
        return Box::pin(apply_instance_profile(ctx, &reread(ctx, work).await?)).await;
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "GetInstanceProfile", "the profile"))?;
    let Attributes::IamInstanceProfile(seen) = &observed.resource.attributes else {
        unreachable!("an instance profile reads as one");
    };
    if seen.role_name != desired.role_name {
        if !seen.role_name.is_empty() {
            iam.remove_role_from_instance_profile()
                .instance_profile_name(name)
                .role_name(&seen.role_name)
                .send()
                .await
                .map_err(api!(subject.clone(), "RemoveRoleFromInstanceProfile"))?;
        }
        iam.add_role_to_instance_profile()
            .instance_profile_name(name)
            .role_name(&desired.role_name)
            .send()
            .await
            .map_err(api!(subject.clone(), "AddRoleToInstanceProfile"))?;
    }
    let (set, remove) = work.tag_changes();
    if !set.is_empty() {
        iam.tag_instance_profile()
            .instance_profile_name(name)
            .set_tags(Some(iam_tags(&set)))
            .send()
            .await
            .map_err(api!(subject.clone(), "TagInstanceProfile"))?;
    }
    if !remove.is_empty() {
        iam.untag_instance_profile()
            .instance_profile_name(name)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(subject.clone(), "UntagInstanceProfile"))?;
    }
    Ok(observed.outputs.clone())
}

/// Deletes a role: AWS refuses (`DeleteConflict`) while it has managed
/// policies attached, inline policies, or sits in an instance profile, so
/// those go first. It is taken out only of the stack's own (tagged)
/// instance profiles; one of someone else's keeps the conflict, which is
/// reported.
pub(crate) async fn delete_role(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let subject = super::subject_of(o);
    let iam = ctx.aws.iam();
    let name = &o.resource.name;
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(api!(subject.clone(), "ListAttachedRolePolicies"))?;
    for p in attached.attached_policies() {
        if let Some(arn) = &p.policy_arn {
            iam.detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(api!(subject.clone(), "DetachRolePolicy"))?;
        }
    }
    let inline = iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(api!(subject.clone(), "ListRolePolicies"))?;
    for policy in inline.policy_names() {
        iam.delete_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .map_err(api!(subject.clone(), "DeleteRolePolicy"))?;
    }
    let profiles = iam
        .list_instance_profiles_for_role()
        .role_name(name)
        .send()
        .await
        .map_err(api!(subject.clone(), "ListInstanceProfilesForRole"))?;
    for profile in profiles.instance_profiles() {
        let got = iam
            .get_instance_profile()
            .instance_profile_name(&profile.instance_profile_name)
            .send()
            .await
            .map_err(api!(subject.clone(), "GetInstanceProfile"))?;
        let ours = got
            .instance_profile
            .as_ref()
            .is_some_and(|p| tags_of(p.tags()).get(TAG_STACK) == Some(&ctx.stack));
        if ours {
            iam.remove_role_from_instance_profile()
                .instance_profile_name(&profile.instance_profile_name)
                .role_name(name)
                .send()
                .await
                .map_err(api!(subject.clone(), "RemoveRoleFromInstanceProfile"))?;
        }
    }
    iam.delete_role()
        .role_name(name)
        .send()
        .await
        .map_err(api!(subject, "DeleteRole"))?;
    Ok(Deleted::Gone)
}

/// Deletes a role's inline policy.
pub(crate) async fn delete_role_policy(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let Attributes::IamRolePolicy(p) = &o.resource.attributes else {
        unreachable!("a role policy reads as one");
    };
    ctx.aws
        .iam()
        .delete_role_policy()
        .role_name(&p.role_name)
        .policy_name(&o.resource.name)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteRolePolicy"))?;
    Ok(Deleted::Gone)
}

/// Deletes an instance profile after taking its roles out of it.
pub(crate) async fn delete_instance_profile(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    let subject = super::subject_of(o);
    let iam = ctx.aws.iam();
    let name = &o.resource.name;
    let got = iam
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(api!(subject.clone(), "GetInstanceProfile"))?;
    for role in got
        .instance_profile
        .as_ref()
        .map(|p| p.roles())
        .unwrap_or_default()
    {
        iam.remove_role_from_instance_profile()
            .instance_profile_name(name)
            .role_name(&role.role_name)
            .send()
            .await
            .map_err(api!(subject.clone(), "RemoveRoleFromInstanceProfile"))?;
    }
    iam.delete_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .map_err(api!(subject, "DeleteInstanceProfile"))?;
    Ok(Deleted::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documents_in_any_equivalent_shape() {
        let doc = parse_document(
            "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Service%22%3A%22ec2.amazonaws.com%22%7D%2C%22Action%22%3A%22sts%3AAssumeRole%22%7D%7D",
        );
        assert_eq!(doc, PolicyDocument::trust("ec2.amazonaws.com"));
    }
}
