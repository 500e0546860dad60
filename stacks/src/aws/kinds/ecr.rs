//! ECR: the repository the engine image is pushed to (when the spec does
//! not name a prebuilt image).

use std::collections::BTreeMap;

use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability, Tag,
};

use super::{
    Ctx, Deleted, Observed, Target, Work, api, attrs, incomplete, not_found_is_none, outputs,
    reread,
};
use crate::aws::error::Result;
use crate::aws::resolve::Outputs;
use crate::graph::plan::Action;
use crate::graph::{Attributes, EcrRepository};

fn ecr_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

pub(crate) async fn read(ctx: &Ctx, t: &Target) -> Result<Option<Observed>> {
    let ecr = ctx.aws.ecr();
    let got = ecr
        .describe_repositories()
        .repository_names(&t.name)
        .send()
        .await
        .map_err(api!(t.subject(), "DescribeRepositories"));
    let Some(got) = not_found_is_none(got)? else {
        return Ok(None);
    };
    let Some(repo) = got.repositories.unwrap_or_default().into_iter().next() else {
        return Ok(None);
    };
    let arn = repo
        .repository_arn
        .clone()
        .ok_or_else(|| incomplete(t, "DescribeRepositories", "repositoryArn"))?;
    let tags = ecr
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(api!(t.subject(), "ListTagsForResource"))?;
    let attributes = Attributes::EcrRepository(EcrRepository {
        image_tag_mutability: repo
            .image_tag_mutability
            .as_ref()
            .map_or("MUTABLE", |m| m.as_str())
            .to_string(),
        scan_on_push: repo
            .image_scanning_configuration
            .as_ref()
            .is_some_and(|c| c.scan_on_push),
        encryption: repo
            .encryption_configuration
            .as_ref()
            .map_or("AES256", |e| e.encryption_type.as_str())
            .to_string(),
    });
    let tags = tags
        .tags()
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    Ok(Some(t.observed(
        tags,
        attributes,
        outputs([
            ("arn", arn),
            ("uri", repo.repository_uri.clone().unwrap_or_default()),
        ]),
    )))
}

pub(crate) async fn apply(ctx: &Ctx, work: &Work) -> Result<Outputs> {
    let desired = attrs!(work, EcrRepository);
    let subject = work.subject();
    let ecr = ctx.aws.ecr();
    let name = &work.desired.name;
    let scanning = ImageScanningConfiguration::builder()
        .scan_on_push(desired.scan_on_push)
        .build();
    let mutability = ImageTagMutability::from(desired.image_tag_mutability.as_str());
    if work.action == Action::Create {
        let created = ecr
            .create_repository()
            .repository_name(name)
            .image_tag_mutability(mutability.clone())
            .image_scanning_configuration(scanning.clone())
            .encryption_configuration(
                EncryptionConfiguration::builder()
                    .encryption_type(EncryptionType::from(desired.encryption.as_str()))
                    .build()
                    .map_err(|e| crate::aws::error::AwsError::Config(e.to_string()))?,
            )
            .set_tags(Some(ecr_tags(&work.desired.tags)))
            .send()
            .await
            .map_err(api!(subject.clone(), "CreateRepository"));
        return match created {
            Ok(out) => {
                let repo = out
                    .repository
                    .ok_or_else(|| incomplete(&work.target(), "CreateRepository", "repository"))?;
                Ok(outputs([
                    ("arn", repo.repository_arn.unwrap_or_default()),
                    ("uri", repo.repository_uri.unwrap_or_default()),
                ]))
            }
            Err(e) if e.is_already_exists() => {
                Box::pin(apply(ctx, &reread(ctx, work).await?)).await
            }
            Err(e) => Err(e),
        };
    }
    let observed = work
        .observed
        .as_ref()
        .ok_or_else(|| incomplete(&work.target(), "DescribeRepositories", "the repository"))?;
    if work.changed("image_tag_mutability") {
        ecr.put_image_tag_mutability()
            .repository_name(name)
            .image_tag_mutability(mutability)
            .send()
            .await
            .map_err(api!(subject.clone(), "PutImageTagMutability"))?;
    }
    if work.changed("scan_on_push") {
        ecr.put_image_scanning_configuration()
            .repository_name(name)
            .image_scanning_configuration(scanning)
            .send()
            .await
            .map_err(api!(subject.clone(), "PutImageScanningConfiguration"))?;
    }
    let arn = &observed.outputs["arn"];
    let (set, remove) = work.tag_changes();
    if !set.is_empty() {
        ecr.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(ecr_tags(&set)))
            .send()
            .await
            .map_err(api!(subject.clone(), "TagResource"))?;
    }
    if !remove.is_empty() {
        ecr.untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(api!(subject.clone(), "UntagResource"))?;
    }
    Ok(observed.outputs.clone())
}

/// Deletes the repository with its images (`force`): `down` removes the
/// stack's pushed engine images too.
pub(crate) async fn delete(ctx: &Ctx, o: &Observed) -> Result<Deleted> {
    ctx.aws
        .ecr()
        .delete_repository()
        .repository_name(&o.resource.name)
        .force(true)
        .send()
        .await
        .map_err(api!(super::subject_of(o), "DeleteRepository"))?;
    Ok(Deleted::Gone)
}
