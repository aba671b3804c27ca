//! `enforce-imdsv2`: the instance metadata service answers only requests
//! carrying a session token (`HttpTokens=required`), which closes the
//! IMDSv1 path a server-side request forgery uses to read the role's
//! credentials.
//!
//! Every other metadata option keeps its value: the hop limit (containers
//! behind a bridge need 2), whether the endpoint is on at all, its IPv6
//! address and access to tags. Each call sends all five options, not just
//! `HttpTokens`: AWS leaves an option it is not given as it is, but the
//! emulator (moto 5.2.5) resets it to its default, and a call that states
//! every option means the same thing to both. Undo sends the five recorded
//! options back, so the instance is exactly as it was.

use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataOptionsResponse,
    InstanceMetadataOptionsState, InstanceMetadataProtocolState, InstanceMetadataTagsState,
};
use cordon_core::action::EnforceImdsv2 as Params;
use cordon_core::executor::{ActionError, ErrorKind};
use serde::{Deserialize, Serialize};

use super::describe_instance;
use crate::actions::{Ctx, Handler};
use crate::ops;

/// The `enforce-imdsv2` handler.
#[derive(Debug)]
pub struct EnforceImdsv2;

const REQUIRED: &str = "required";

/// The instance's metadata options, as `DescribeInstances` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MetadataOptions {
    /// `optional` (IMDSv1 allowed) or `required` (IMDSv2 only).
    pub http_tokens: String,
    /// How many network hops the token response may travel (1-64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_put_response_hop_limit: Option<i32>,
    /// `enabled` or `disabled`: whether the metadata service answers at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_endpoint: Option<String>,
    /// `enabled` or `disabled`: the IPv6 endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_protocol_ipv6: Option<String>,
    /// `enabled` or `disabled`: instance tags readable from the metadata service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_metadata_tags: Option<String>,
}

impl MetadataOptions {
    fn read(options: &InstanceMetadataOptionsResponse) -> Self {
        Self {
            // An instance whose answer names no token setting allows IMDSv1,
            // AWS's default for instances launched without the option.
            http_tokens: options
                .http_tokens()
                .map_or("optional", HttpTokensState::as_str)
                .to_string(),
            http_put_response_hop_limit: options.http_put_response_hop_limit(),
            http_endpoint: options.http_endpoint().map(|v| v.as_str().to_string()),
            http_protocol_ipv6: options.http_protocol_ipv6().map(|v| v.as_str().to_string()),
            instance_metadata_tags: options
                .instance_metadata_tags()
                .map(|v| v.as_str().to_string()),
        }
    }

    /// The same options with tokens required.
    fn with_tokens_required(&self) -> Self {
        Self {
            http_tokens: REQUIRED.to_string(),
            ..self.clone()
        }
    }

    /// The options that differ from `want`, for messages.
    fn differences(&self, want: &MetadataOptions) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, now: String, was: String| {
            if now != was {
                out.push(format!("{name} reads back {now}, expected {was}"));
            }
        };
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_string());
        field(
            "HttpTokens",
            self.http_tokens.clone(),
            want.http_tokens.clone(),
        );
        field(
            "HttpPutResponseHopLimit",
            format!("{:?}", self.http_put_response_hop_limit),
            format!("{:?}", want.http_put_response_hop_limit),
        );
        field(
            "HttpEndpoint",
            text(&self.http_endpoint),
            text(&want.http_endpoint),
        );
        field(
            "HttpProtocolIpv6",
            text(&self.http_protocol_ipv6),
            text(&want.http_protocol_ipv6),
        );
        field(
            "InstanceMetadataTags",
            text(&self.instance_metadata_tags),
            text(&want.instance_metadata_tags),
        );
        out
    }

    /// The call that sets these options, one line (as in a dry run).
    fn describe(&self, instance_id: &str) -> String {
        let mut line = format!(
            "{} {instance_id} HttpTokens={}",
            ops::EC2_MODIFY_INSTANCE_METADATA_OPTIONS.iam_action,
            self.http_tokens
        );
        let optional = [
            (
                "HttpPutResponseHopLimit",
                self.http_put_response_hop_limit.map(|v| v.to_string()),
            ),
            ("HttpEndpoint", self.http_endpoint.clone()),
            ("HttpProtocolIpv6", self.http_protocol_ipv6.clone()),
            ("InstanceMetadataTags", self.instance_metadata_tags.clone()),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                line.push_str(&format!(" {name}={value}"));
            }
        }
        line
    }

    /// Sets exactly these options on the instance.
    async fn send(&self, ctx: Ctx<'_>, instance_id: &str) -> Result<(), ActionError> {
        let clients = ctx.clients();
        let request = clients
            .ec2
            .modify_instance_metadata_options()
            .instance_id(instance_id)
            .http_tokens(HttpTokensState::from(self.http_tokens.as_str()))
            .set_http_put_response_hop_limit(self.http_put_response_hop_limit)
            .set_http_endpoint(
                self.http_endpoint
                    .as_deref()
                    .map(InstanceMetadataEndpointState::from),
            )
            .set_http_protocol_ipv6(
                self.http_protocol_ipv6
                    .as_deref()
                    .map(InstanceMetadataProtocolState::from),
            )
            .set_instance_metadata_tags(
                self.instance_metadata_tags
                    .as_deref()
                    .map(InstanceMetadataTagsState::from),
            );
        clients
            .call(
                &ops::EC2_MODIFY_INSTANCE_METADATA_OPTIONS,
                instance_id,
                request,
            )
            .await?;
        Ok(())
    }
}

/// The options before the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImdsPreState {
    /// The instance the options belong to.
    pub instance_id: String,
    /// All five options, as they were.
    pub options: MetadataOptions,
}

/// What apply did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImdsOutcome {
    /// The call made; empty when tokens were already required.
    pub changed: Vec<String>,
}

/// What undo did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImdsUndone {
    /// The call made; empty when the options were already back.
    pub restored: Vec<String>,
}

/// The live options and whether AWS has finished applying the last change.
struct Live {
    options: MetadataOptions,
    pending: bool,
}

async fn read(ctx: Ctx<'_>, instance_id: &str) -> Result<Live, ActionError> {
    let instance = describe_instance(ctx, instance_id).await?;
    let Some(options) = instance.metadata_options() else {
        return Err(ActionError::new(
            ErrorKind::Conflict,
            instance_id,
            "DescribeInstances returned no metadata options for the instance",
            "the instance may still be launching; the step is retried",
        ));
    };
    Ok(Live {
        options: MetadataOptions::read(options),
        pending: options.state() == Some(&InstanceMetadataOptionsState::Pending),
    })
}

/// Checks the live options against `want`, once AWS has applied them.
fn check(
    instance_id: &str,
    live: &Live,
    want: &MetadataOptions,
    hint: &str,
) -> Result<(), ActionError> {
    if live.pending {
        return Err(ActionError::new(
            ErrorKind::Verification,
            instance_id,
            "the metadata options change is still pending",
            "EC2 applies metadata options within seconds; the step is retried",
        ));
    }
    let differences = live.options.differences(want);
    if differences.is_empty() {
        return Ok(());
    }
    Err(ActionError::new(
        ErrorKind::Verification,
        instance_id,
        differences.join("; "),
        hint,
    ))
}

impl Handler for EnforceImdsv2 {
    type Params = Params;
    type PreState = ImdsPreState;
    type Outcome = ImdsOutcome;
    type Undone = ImdsUndone;

    async fn pre_state(ctx: Ctx<'_>, _p: &Params) -> Result<ImdsPreState, ActionError> {
        let instance_id = ctx.instance()?.instance_id.clone();
        let live = read(ctx, &instance_id).await?;
        Ok(ImdsPreState {
            instance_id,
            options: live.options,
        })
    }

    async fn apply(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ImdsPreState,
    ) -> Result<ImdsOutcome, ActionError> {
        // From the journaled pre-state: a re-apply after a crash sends the
        // same (idempotent) call.
        if pre.options.http_tokens == REQUIRED {
            return Ok(ImdsOutcome { changed: vec![] });
        }
        let want = pre.options.with_tokens_required();
        want.send(ctx, &pre.instance_id).await?;
        Ok(ImdsOutcome {
            changed: vec![want.describe(&pre.instance_id)],
        })
    }

    async fn verify(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ImdsPreState,
        _outcome: &ImdsOutcome,
    ) -> Result<(), ActionError> {
        let live = read(ctx, &pre.instance_id).await?;
        check(
            &pre.instance_id,
            &live,
            &pre.options.with_tokens_required(),
            "the step is retried; if it persists check who else modifies the instance's metadata options",
        )
    }

    async fn undo(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ImdsPreState,
        _outcome: Option<&ImdsOutcome>,
    ) -> Result<ImdsUndone, ActionError> {
        // Read first: the same from an applied, a never-applied and an
        // already-undone instance.
        let live = read(ctx, &pre.instance_id).await?;
        if live.options == pre.options {
            return Ok(ImdsUndone { restored: vec![] });
        }
        pre.options.send(ctx, &pre.instance_id).await?;
        Ok(ImdsUndone {
            restored: vec![pre.options.describe(&pre.instance_id)],
        })
    }

    async fn verify_undone(
        ctx: Ctx<'_>,
        _p: &Params,
        pre: &ImdsPreState,
    ) -> Result<(), ActionError> {
        let live = read(ctx, &pre.instance_id).await?;
        check(
            &pre.instance_id,
            &live,
            &pre.options,
            "rollback retries; if it persists set the options back by hand from the step's pre-state",
        )
    }

    fn describe(_ctx: Ctx<'_>, _p: &Params, pre: &ImdsPreState) -> Vec<String> {
        if pre.options.http_tokens == REQUIRED {
            return vec![];
        }
        vec![
            pre.options
                .with_tokens_required()
                .describe(&pre.instance_id),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> MetadataOptions {
        MetadataOptions {
            http_tokens: "optional".into(),
            http_put_response_hop_limit: Some(2),
            http_endpoint: Some("enabled".into()),
            http_protocol_ipv6: Some("disabled".into()),
            instance_metadata_tags: Some("enabled".into()),
        }
    }

    #[test]
    fn requiring_tokens_keeps_every_other_option() {
        let want = options().with_tokens_required();
        assert_eq!(
            want.differences(&options()),
            ["HttpTokens reads back required, expected optional"]
        );
        assert_eq!(
            want.describe("i-1"),
            "ec2:ModifyInstanceMetadataOptions i-1 HttpTokens=required HttpPutResponseHopLimit=2 \
             HttpEndpoint=enabled HttpProtocolIpv6=disabled InstanceMetadataTags=enabled"
        );
    }

    #[test]
    fn pre_state_reads_kebab_case_and_omits_unknown_options() {
        let pre = ImdsPreState {
            instance_id: "i-1".into(),
            options: MetadataOptions {
                http_protocol_ipv6: None,
                ..options()
            },
        };
        let json = serde_json::to_value(&pre).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"instance-id": "i-1", "options": {
                "http-tokens": "optional", "http-put-response-hop-limit": 2,
                "http-endpoint": "enabled", "instance-metadata-tags": "enabled"}})
        );
        assert_eq!(serde_json::from_value::<ImdsPreState>(json).unwrap(), pre);
    }

    #[test]
    fn a_pending_change_is_not_verified() {
        let live = Live {
            options: options(),
            pending: true,
        };
        let err = check("i-1", &live, &options(), "hint").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Verification);
        assert!(err.to_string().contains("pending"), "{err}");
    }
}
