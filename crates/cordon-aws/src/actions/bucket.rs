//! `block-bucket-public-access`: turns on all four settings of the bucket's
//! own public access block, so no ACL or bucket policy can make it public.
//!
//! The pre-state is the bucket's block as it was, or its absence; undo puts
//! that configuration back, or deletes the block the step created, so the
//! bucket is exactly as before. The account-level block (S3 Control) is
//! another resource and is never touched.

use aws_sdk_s3::types::PublicAccessBlockConfiguration;
use cordon_core::action::BlockBucketPublicAccess as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::actions::{Ctx, Handler};
use crate::ops;

/// The `block-bucket-public-access` handler.
#[derive(Debug)]
pub struct BlockBucketPublicAccess;

/// A bucket's public access block: the four settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// Everything blocked: what the step leaves.
    const ALL: PublicAccessBlock = PublicAccessBlock {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };

    fn read(config: &PublicAccessBlockConfiguration) -> Self {
        // A setting S3 does not report is off.
        Self {
            block_public_acls: config.block_public_acls().unwrap_or(false),
            ignore_public_acls: config.ignore_public_acls().unwrap_or(false),
            block_public_policy: config.block_public_policy().unwrap_or(false),
            restrict_public_buckets: config.restrict_public_buckets().unwrap_or(false),
        }
    }

    fn configuration(self) -> PublicAccessBlockConfiguration {
        PublicAccessBlockConfiguration::builder()
            .block_public_acls(self.block_public_acls)
            .ignore_public_acls(self.ignore_public_acls)
            .block_public_policy(self.block_public_policy)
            .restrict_public_buckets(self.restrict_public_buckets)
            .build()
    }

    fn describe(self) -> String {
        format!(
            "BlockPublicAcls={} IgnorePublicAcls={} BlockPublicPolicy={} RestrictPublicBuckets={}",
            self.block_public_acls,
            self.ignore_public_acls,
            self.block_public_policy,
            self.restrict_public_buckets
        )
    }
}

/// The bucket's block before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BucketPreState {
    pub bucket_name: String,
    /// `None`: the bucket had no block of its own (undo deletes the step's).
    pub public_access_block: Option<PublicAccessBlock>,
}

/// What apply did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BucketOutcome {
    /// The call made; empty when everything was already blocked.
    pub changed: Vec<String>,
}

/// What undo did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BucketUndone {
    /// The call made; empty when the bucket was already as before.
    pub restored: Vec<String>,
}

fn resource(bucket: &str) -> String {
    format!("s3://{bucket}")
}

async fn read(ctx: Ctx<'_>, bucket: &str) -> Result<Option<PublicAccessBlock>, ActionError> {
    let clients = ctx.clients();
    let request = clients.s3.get_public_access_block().bucket(bucket);
    match clients
        .try_call(&ops::S3_GET_PUBLIC_ACCESS_BLOCK, &resource(bucket), request)
        .await
    {
        Ok(out) => Ok(out
            .public_access_block_configuration()
            .map(PublicAccessBlock::read)),
        Err(e) if e.code() == Some("NoSuchPublicAccessBlockConfiguration") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn put_line(bucket: &str, block: PublicAccessBlock) -> String {
    format!(
        "{} {bucket} {}",
        ops::S3_PUT_PUBLIC_ACCESS_BLOCK.name,
        block.describe()
    )
}

async fn put(ctx: Ctx<'_>, bucket: &str, block: PublicAccessBlock) -> Result<(), ActionError> {
    let clients = ctx.clients();
    let request = clients
        .s3
        .put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(block.configuration());
    clients
        .call(&ops::S3_PUT_PUBLIC_ACCESS_BLOCK, &resource(bucket), request)
        .await?;
    Ok(())
}

fn mismatch(
    bucket: &str,
    now: Option<PublicAccessBlock>,
    want: Option<PublicAccessBlock>,
    hint: &str,
) -> ActionError {
    let show = |b: Option<PublicAccessBlock>| {
        b.map_or("no block".to_string(), PublicAccessBlock::describe)
    };
    ActionError::new(
        ErrorKind::Verification,
        resource(bucket),
        format!(
            "the bucket's public access block reads back {}, expected {}",
            show(now),
            show(want)
        ),
        hint,
    )
}

impl Handler for BlockBucketPublicAccess {
    type Params = Params;
    type PreState = BucketPreState;
    type Outcome = BucketOutcome;
    type Undone = BucketUndone;

    async fn pre_state(ctx: Ctx<'_>, _p: &Params) -> Result<BucketPreState, ActionError> {
        let bucket = ctx.bucket()?;
        Ok(BucketPreState {
            bucket_name: bucket.to_string(),
            public_access_block: read(ctx, bucket).await?,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        p: &Params,
        pre: &BucketPreState,
    ) -> Result<BucketOutcome, ActionError> {
        let changed = Self::describe(ctx, p, pre);
        if !changed.is_empty() {
            put(ctx, &pre.bucket_name, PublicAccessBlock::ALL).await?;
        }
        Ok(BucketOutcome { changed })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &BucketPreState,
        _outcome: &BucketOutcome,
    ) -> Result<(), ActionError> {
        let now = read(ctx, &pre.bucket_name).await?;
        if now == Some(PublicAccessBlock::ALL) {
            return Ok(());
        }
        Err(mismatch(
            &pre.bucket_name,
            now,
            Some(PublicAccessBlock::ALL),
            "the step is retried; if it persists check who else changes the bucket's public access block",
        ))
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &BucketPreState,
        _outcome: Option<&BucketOutcome>,
    ) -> Result<BucketUndone, ActionError> {
        let bucket = &pre.bucket_name;
        let now = read(ctx, bucket).await?;
        if now == pre.public_access_block {
            return Ok(BucketUndone { restored: vec![] });
        }
        let line = match pre.public_access_block {
            Some(block) => {
                put(ctx, bucket, block).await?;
                put_line(bucket, block)
            }
            None => {
                let clients = ctx.clients();
                let request = clients.s3.delete_public_access_block().bucket(bucket);
                clients
                    .call(
                        &ops::S3_DELETE_PUBLIC_ACCESS_BLOCK,
                        &resource(bucket),
                        request,
                    )
                    .await?;
                format!("{} {bucket}", ops::S3_DELETE_PUBLIC_ACCESS_BLOCK.name)
            }
        };
        Ok(BucketUndone {
            restored: vec![line],
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &BucketPreState,
    ) -> Result<(), ActionError> {
        let now = read(ctx, &pre.bucket_name).await?;
        if now == pre.public_access_block {
            return Ok(());
        }
        Err(mismatch(
            &pre.bucket_name,
            now,
            pre.public_access_block,
            "rollback retries; if it persists set the bucket's public access block back by hand from the step's pre-state",
        ))
    }

    fn describe(_ctx: Ctx<'_>, _p: &Params, pre: &BucketPreState) -> Vec<String> {
        if pre.public_access_block == Some(PublicAccessBlock::ALL) {
            return vec![];
        }
        vec![put_line(&pre.bucket_name, PublicAccessBlock::ALL)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_state_records_the_absence_of_a_block() {
        let pre = BucketPreState {
            bucket_name: "b".into(),
            public_access_block: None,
        };
        let json = serde_json::to_value(&pre).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"bucket-name": "b", "public-access-block": null})
        );
        assert_eq!(serde_json::from_value::<BucketPreState>(json).unwrap(), pre);
    }
}
