//! The one call path to AWS: every request cordon sends goes through
//! [`AwsClients::call`] (or its siblings), keyed by its row in [`crate::ops`].
//!
//! One place, so that every call
//! 1. waits for a token from its operation's throttle bucket,
//! 2. is recorded under the action that made it ([`crate::recorder`]),
//! 3. fails as a [`CallError`] naming the operation, the resource and what
//!    to do (or as a typed [`Failed`] where the caller handles an expected
//!    answer itself), and
//! 4. is paginated by one loop, not one per caller.
//!
//! A request is any SDK fluent builder with a [`Request`] implementation
//! (the table at the bottom of this file); paginated ones also implement
//! [`Paged`].

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::client::{AwsClients, call_overrides};
use crate::errors::{CallError, Failed};
use crate::ops::Op;

/// An SDK request ready to send (a fluent builder).
pub trait Request: Send + Sized {
    /// What AWS answers.
    type Output: Send;
    /// The operation's modelled error.
    type Error: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static;

    /// Sends the request as `op` (its time budgets, and no SDK retry when it
    /// is sent once), with `capture` keeping the raw response body when given.
    fn send_request(
        self,
        op: &'static Op,
        capture: Option<RawBodyCapture>,
    ) -> impl Future<Output = Result<Self::Output, SdkError<Self::Error, HttpResponse>>> + Send;
}

/// A request whose answer may continue on another page.
pub trait Paged: Request + Clone {
    /// Where the next page starts.
    type Token: PartialEq + Clone + Send;

    /// The same request, asking for the page at `token` (the first page for `None`).
    fn with_page(self, token: Option<Self::Token>) -> Self;

    /// Where the page after `output` starts; `None` on the last page.
    fn next_page(output: &Self::Output) -> Option<Self::Token>;
}

/// Every item of every page, in order: `items(&pages, |page| page.snapshots())`.
pub fn items<P, T: Clone>(pages: &[P], of: impl Fn(&P) -> &[T]) -> Vec<T> {
    pages.iter().flat_map(of).cloned().collect()
}

/// An answer with the raw HTTP body it was decoded from, for callers that keep
/// exactly what AWS sent (GuardDuty findings, Detective investigations).
#[derive(Debug)]
pub struct Raw<T> {
    /// The decoded answer.
    pub output: T,
    /// The body as AWS sent it, when the transport buffered it.
    pub body: Option<Vec<u8>>,
}

impl AwsClients {
    /// Sends `request`, an `op` call about `resource`: waits for the op's
    /// rate-limit token, records the call, and classifies a failure.
    pub async fn call<R: Request>(
        &self,
        op: &'static Op,
        resource: &str,
        request: R,
    ) -> Result<R::Output, CallError> {
        self.send(op, resource, request, None)
            .await
            .map_err(Failed::into_error)
    }

    /// Like [`AwsClients::call`], but a failure comes back typed, for the
    /// caller to accept an expected answer (`?` turns the rest into a
    /// [`CallError`] or an action error).
    pub async fn try_call<R: Request>(
        &self,
        op: &'static Op,
        resource: &str,
        request: R,
    ) -> Result<R::Output, Failed<R::Error>> {
        self.send(op, resource, request, None).await
    }

    /// Like [`AwsClients::call`], keeping the raw response body too.
    pub async fn call_raw<R: Request>(
        &self,
        op: &'static Op,
        resource: &str,
        request: R,
    ) -> Result<Raw<R::Output>, CallError> {
        let capture = RawBodyCapture::default();
        let output = self
            .send(op, resource, request, Some(capture.clone()))
            .await
            .map_err(Failed::into_error)?;
        Ok(Raw {
            output,
            body: capture.take(),
        })
    }

    /// Every page of `request`, in order; each page is one call.
    pub async fn paginate<R: Paged>(
        &self,
        op: &'static Op,
        resource: &str,
        request: R,
    ) -> Result<Vec<R::Output>, CallError> {
        let pages = self.pages(op, resource, request, false).await?;
        Ok(pages.into_iter().map(|page| page.output).collect())
    }

    /// Every page of `request` with its raw body.
    pub async fn paginate_raw<R: Paged>(
        &self,
        op: &'static Op,
        resource: &str,
        request: R,
    ) -> Result<Vec<Raw<R::Output>>, CallError> {
        self.pages(op, resource, request, true).await
    }

    async fn pages<R: Paged>(
        &self,
        op: &'static Op,
        resource: &str,
        request: R,
        raw: bool,
    ) -> Result<Vec<Raw<R::Output>>, CallError> {
        let mut pages = Vec::new();
        let mut token: Option<R::Token> = None;
        loop {
            let capture = raw.then(RawBodyCapture::default);
            let output = self
                .send(
                    op,
                    resource,
                    request.clone().with_page(token.clone()),
                    capture.clone(),
                )
                .await
                .map_err(Failed::into_error)?;
            let next = R::next_page(&output);
            pages.push(Raw {
                output,
                body: capture.and_then(|c| c.take()),
            });
            // A service repeating the token it was given would loop forever.
            match next {
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                _ => return Ok(pages),
            }
        }
    }

    async fn send<R: Request>(
        &self,
        op: &'static Op,
        resource: &str,
        request: R,
        capture: Option<RawBodyCapture>,
    ) -> Result<R::Output, Failed<R::Error>> {
        self.limits.acquire(op.bucket).await;
        // Held through the SDK's attempts: waiting here is not an attempt.
        let _slot = self.in_flight.enter().await;
        if op.mutating {
            // Before sending: a read in flight now may see either state.
            self.reads.invalidate(resource);
        }
        let ticket = self.recorder.record(op, resource);
        tracing::trace!(operation = op.name, resource, "AWS call");
        // Boxed: an SDK operation's future is large, and every caller's
        // future would otherwise carry it (a handler's future, many of them).
        let result = Box::pin(request.send_request(op, capture)).await;
        self.recorder.finish(ticket);
        #[cfg(feature = "crash-hooks")]
        if result.is_ok() {
            crate::crash::after_answered(op);
        }
        result.map_err(|error| Failed::new(op, resource, error))
    }
}

/// Copies the raw HTTP body of a successful response.
///
/// The hook is `read_after_deserialization` because that is the first point
/// where the SDK has buffered the body in memory for a non-streaming
/// operation; in `read_before_deserialization` a real connection's body is
/// still an unread stream (`bytes()` is `None`), and only in-memory test
/// bodies would appear to work. Each attempt overwrites the previous one, so
/// after retries the body is the successful attempt's.
#[derive(Debug, Clone, Default)]
pub struct RawBodyCapture {
    body: Arc<Mutex<Option<Vec<u8>>>>,
}

impl RawBodyCapture {
    /// The captured body, if a successful response was seen.
    pub fn take(&self) -> Option<Vec<u8>> {
        // The slot is replaced whole, never left half-written, so a poisoned
        // lock still holds a consistent value.
        self.body
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Intercept for RawBodyCapture {
    fn name(&self) -> &'static str {
        "cordon.RawBodyCapture"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        if response.status().is_success()
            && let Some(bytes) = response.body().bytes()
        {
            *self.body.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes.to_vec());
        }
        Ok(())
    }
}

/// `impl Request` for fluent builders: the only `.send()` calls in cordon.
macro_rules! requests {
    ($( $sdk:ident :: $module:ident : $builder:ident => $output:ident, $error:ident; )*) => {
        $(
            impl Request for $sdk::operation::$module::builders::$builder {
                type Output = $sdk::operation::$module::$output;
                type Error = $sdk::operation::$module::$error;

                async fn send_request(
                    self,
                    op: &'static Op,
                    capture: Option<RawBodyCapture>,
                ) -> Result<Self::Output, SdkError<Self::Error, HttpResponse>> {
                    let (timeouts, retry) = call_overrides(op);
                    let mut config = $sdk::config::Builder::default().timeout_config(timeouts);
                    if let Some(retry) = retry {
                        config = config.retry_config(retry);
                    }
                    let request = self.customize().config_override(config);
                    match capture {
                        None => request.send().await,
                        Some(capture) => request.interceptor(capture).send().await,
                    }
                }
            }
        )*
    };
}

/// `impl Paged` for requests paginated by one string token (empty means done).
macro_rules! paged {
    ($( $sdk:ident :: $module:ident : $builder:ident, $set:ident, $get:ident; )*) => {
        $(
            impl Paged for $sdk::operation::$module::builders::$builder {
                type Token = String;

                fn with_page(self, token: Option<String>) -> Self {
                    self.$set(token)
                }

                fn next_page(output: &Self::Output) -> Option<String> {
                    output.$get().filter(|token| !token.is_empty()).map(str::to_owned)
                }
            }
        )*
    };
}

requests! {
    aws_sdk_ec2::describe_instances: DescribeInstancesFluentBuilder => DescribeInstancesOutput, DescribeInstancesError;
    aws_sdk_ec2::describe_instance_attribute: DescribeInstanceAttributeFluentBuilder => DescribeInstanceAttributeOutput, DescribeInstanceAttributeError;
    aws_sdk_ec2::describe_network_interfaces: DescribeNetworkInterfacesFluentBuilder => DescribeNetworkInterfacesOutput, DescribeNetworkInterfacesError;
    aws_sdk_ec2::describe_security_groups: DescribeSecurityGroupsFluentBuilder => DescribeSecurityGroupsOutput, DescribeSecurityGroupsError;
    aws_sdk_ec2::describe_tags: DescribeTagsFluentBuilder => DescribeTagsOutput, DescribeTagsError;
    aws_sdk_ec2::describe_snapshots: DescribeSnapshotsFluentBuilder => DescribeSnapshotsOutput, DescribeSnapshotsError;
    aws_sdk_ec2::describe_volumes: DescribeVolumesFluentBuilder => DescribeVolumesOutput, DescribeVolumesError;
    aws_sdk_ec2::describe_iam_instance_profile_associations: DescribeIamInstanceProfileAssociationsFluentBuilder => DescribeIamInstanceProfileAssociationsOutput, DescribeIamInstanceProfileAssociationsError;
    aws_sdk_ec2::get_console_output: GetConsoleOutputFluentBuilder => GetConsoleOutputOutput, GetConsoleOutputError;
    aws_sdk_ec2::create_tags: CreateTagsFluentBuilder => CreateTagsOutput, CreateTagsError;
    aws_sdk_ec2::delete_tags: DeleteTagsFluentBuilder => DeleteTagsOutput, DeleteTagsError;
    aws_sdk_ec2::modify_instance_attribute: ModifyInstanceAttributeFluentBuilder => ModifyInstanceAttributeOutput, ModifyInstanceAttributeError;
    aws_sdk_ec2::modify_instance_metadata_options: ModifyInstanceMetadataOptionsFluentBuilder => ModifyInstanceMetadataOptionsOutput, ModifyInstanceMetadataOptionsError;
    aws_sdk_ec2::create_security_group: CreateSecurityGroupFluentBuilder => CreateSecurityGroupOutput, CreateSecurityGroupError;
    aws_sdk_ec2::revoke_security_group_egress: RevokeSecurityGroupEgressFluentBuilder => RevokeSecurityGroupEgressOutput, RevokeSecurityGroupEgressError;
    aws_sdk_ec2::authorize_security_group_egress: AuthorizeSecurityGroupEgressFluentBuilder => AuthorizeSecurityGroupEgressOutput, AuthorizeSecurityGroupEgressError;
    aws_sdk_ec2::authorize_security_group_ingress: AuthorizeSecurityGroupIngressFluentBuilder => AuthorizeSecurityGroupIngressOutput, AuthorizeSecurityGroupIngressError;
    aws_sdk_ec2::revoke_security_group_ingress: RevokeSecurityGroupIngressFluentBuilder => RevokeSecurityGroupIngressOutput, RevokeSecurityGroupIngressError;
    aws_sdk_ec2::describe_snapshot_attribute: DescribeSnapshotAttributeFluentBuilder => DescribeSnapshotAttributeOutput, DescribeSnapshotAttributeError;
    aws_sdk_ec2::modify_snapshot_attribute: ModifySnapshotAttributeFluentBuilder => ModifySnapshotAttributeOutput, ModifySnapshotAttributeError;
    aws_sdk_ec2::modify_network_interface_attribute: ModifyNetworkInterfaceAttributeFluentBuilder => ModifyNetworkInterfaceAttributeOutput, ModifyNetworkInterfaceAttributeError;
    aws_sdk_ec2::create_snapshot: CreateSnapshotFluentBuilder => CreateSnapshotOutput, CreateSnapshotError;
    aws_sdk_ec2::delete_snapshot: DeleteSnapshotFluentBuilder => DeleteSnapshotOutput, DeleteSnapshotError;
    aws_sdk_ec2::associate_iam_instance_profile: AssociateIamInstanceProfileFluentBuilder => AssociateIamInstanceProfileOutput, AssociateIamInstanceProfileError;
    aws_sdk_ec2::disassociate_iam_instance_profile: DisassociateIamInstanceProfileFluentBuilder => DisassociateIamInstanceProfileOutput, DisassociateIamInstanceProfileError;
    aws_sdk_iam::list_access_keys: ListAccessKeysFluentBuilder => ListAccessKeysOutput, ListAccessKeysError;
    aws_sdk_iam::get_access_key_last_used: GetAccessKeyLastUsedFluentBuilder => GetAccessKeyLastUsedOutput, GetAccessKeyLastUsedError;
    aws_sdk_iam::update_access_key: UpdateAccessKeyFluentBuilder => UpdateAccessKeyOutput, UpdateAccessKeyError;
    aws_sdk_iam::create_access_key: CreateAccessKeyFluentBuilder => CreateAccessKeyOutput, CreateAccessKeyError;
    aws_sdk_iam::delete_access_key: DeleteAccessKeyFluentBuilder => DeleteAccessKeyOutput, DeleteAccessKeyError;
    aws_sdk_iam::get_role_policy: GetRolePolicyFluentBuilder => GetRolePolicyOutput, GetRolePolicyError;
    aws_sdk_iam::put_role_policy: PutRolePolicyFluentBuilder => PutRolePolicyOutput, PutRolePolicyError;
    aws_sdk_iam::delete_role_policy: DeleteRolePolicyFluentBuilder => DeleteRolePolicyOutput, DeleteRolePolicyError;
    aws_sdk_iam::get_user_policy: GetUserPolicyFluentBuilder => GetUserPolicyOutput, GetUserPolicyError;
    aws_sdk_iam::put_user_policy: PutUserPolicyFluentBuilder => PutUserPolicyOutput, PutUserPolicyError;
    aws_sdk_iam::delete_user_policy: DeleteUserPolicyFluentBuilder => DeleteUserPolicyOutput, DeleteUserPolicyError;
    aws_sdk_iam::list_attached_user_policies: ListAttachedUserPoliciesFluentBuilder => ListAttachedUserPoliciesOutput, ListAttachedUserPoliciesError;
    aws_sdk_iam::attach_user_policy: AttachUserPolicyFluentBuilder => AttachUserPolicyOutput, AttachUserPolicyError;
    aws_sdk_iam::detach_user_policy: DetachUserPolicyFluentBuilder => DetachUserPolicyOutput, DetachUserPolicyError;
    aws_sdk_iam::get_instance_profile: GetInstanceProfileFluentBuilder => GetInstanceProfileOutput, GetInstanceProfileError;
    aws_sdk_iam::get_login_profile: GetLoginProfileFluentBuilder => GetLoginProfileOutput, GetLoginProfileError;
    aws_sdk_iam::delete_login_profile: DeleteLoginProfileFluentBuilder => DeleteLoginProfileOutput, DeleteLoginProfileError;
    aws_sdk_secretsmanager::describe_secret: DescribeSecretFluentBuilder => DescribeSecretOutput, DescribeSecretError;
    aws_sdk_secretsmanager::create_secret: CreateSecretFluentBuilder => CreateSecretOutput, CreateSecretError;
    aws_sdk_secretsmanager::delete_secret: DeleteSecretFluentBuilder => DeleteSecretOutput, DeleteSecretError;
    aws_sdk_autoscaling::describe_auto_scaling_instances: DescribeAutoScalingInstancesFluentBuilder => DescribeAutoScalingInstancesOutput, DescribeAutoScalingInstancesError;
    aws_sdk_autoscaling::describe_auto_scaling_groups: DescribeAutoScalingGroupsFluentBuilder => DescribeAutoScalingGroupsOutput, DescribeAutoScalingGroupsError;
    aws_sdk_autoscaling::update_auto_scaling_group: UpdateAutoScalingGroupFluentBuilder => UpdateAutoScalingGroupOutput, UpdateAutoScalingGroupError;
    aws_sdk_autoscaling::detach_instances: DetachInstancesFluentBuilder => DetachInstancesOutput, DetachInstancesError;
    aws_sdk_autoscaling::attach_instances: AttachInstancesFluentBuilder => AttachInstancesOutput, AttachInstancesError;
    aws_sdk_autoscaling::set_instance_protection: SetInstanceProtectionFluentBuilder => SetInstanceProtectionOutput, SetInstanceProtectionError;
    aws_sdk_elasticloadbalancingv2::describe_target_groups: DescribeTargetGroupsFluentBuilder => DescribeTargetGroupsOutput, DescribeTargetGroupsError;
    aws_sdk_elasticloadbalancingv2::describe_target_health: DescribeTargetHealthFluentBuilder => DescribeTargetHealthOutput, DescribeTargetHealthError;
    aws_sdk_elasticloadbalancingv2::deregister_targets: DeregisterTargetsFluentBuilder => DeregisterTargetsOutput, DeregisterTargetsError;
    aws_sdk_elasticloadbalancingv2::register_targets: RegisterTargetsFluentBuilder => RegisterTargetsOutput, RegisterTargetsError;
    aws_sdk_s3::put_object: PutObjectFluentBuilder => PutObjectOutput, PutObjectError;
    aws_sdk_s3::get_object: GetObjectFluentBuilder => GetObjectOutput, GetObjectError;
    aws_sdk_s3::head_object: HeadObjectFluentBuilder => HeadObjectOutput, HeadObjectError;
    aws_sdk_s3::list_object_versions: ListObjectVersionsFluentBuilder => ListObjectVersionsOutput, ListObjectVersionsError;
    aws_sdk_s3::list_objects_v2: ListObjectsV2FluentBuilder => ListObjectsV2Output, ListObjectsV2Error;
    aws_sdk_s3::head_bucket: HeadBucketFluentBuilder => HeadBucketOutput, HeadBucketError;
    aws_sdk_s3::create_bucket: CreateBucketFluentBuilder => CreateBucketOutput, CreateBucketError;
    aws_sdk_s3::put_bucket_versioning: PutBucketVersioningFluentBuilder => PutBucketVersioningOutput, PutBucketVersioningError;
    aws_sdk_s3::get_bucket_versioning: GetBucketVersioningFluentBuilder => GetBucketVersioningOutput, GetBucketVersioningError;
    aws_sdk_s3::put_bucket_encryption: PutBucketEncryptionFluentBuilder => PutBucketEncryptionOutput, PutBucketEncryptionError;
    aws_sdk_s3::get_bucket_encryption: GetBucketEncryptionFluentBuilder => GetBucketEncryptionOutput, GetBucketEncryptionError;
    aws_sdk_s3::put_public_access_block: PutPublicAccessBlockFluentBuilder => PutPublicAccessBlockOutput, PutPublicAccessBlockError;
    aws_sdk_s3::get_public_access_block: GetPublicAccessBlockFluentBuilder => GetPublicAccessBlockOutput, GetPublicAccessBlockError;
    aws_sdk_s3::delete_public_access_block: DeletePublicAccessBlockFluentBuilder => DeletePublicAccessBlockOutput, DeletePublicAccessBlockError;
    aws_sdk_s3::put_bucket_policy: PutBucketPolicyFluentBuilder => PutBucketPolicyOutput, PutBucketPolicyError;
    aws_sdk_s3::get_bucket_policy: GetBucketPolicyFluentBuilder => GetBucketPolicyOutput, GetBucketPolicyError;
    aws_sdk_s3::put_object_lock_configuration: PutObjectLockConfigurationFluentBuilder => PutObjectLockConfigurationOutput, PutObjectLockConfigurationError;
    aws_sdk_s3::get_object_lock_configuration: GetObjectLockConfigurationFluentBuilder => GetObjectLockConfigurationOutput, GetObjectLockConfigurationError;
    aws_sdk_kms::describe_key: DescribeKeyFluentBuilder => DescribeKeyOutput, DescribeKeyError;
    aws_sdk_kms::create_key: CreateKeyFluentBuilder => CreateKeyOutput, CreateKeyError;
    aws_sdk_kms::create_alias: CreateAliasFluentBuilder => CreateAliasOutput, CreateAliasError;
    aws_sdk_kms::sign: SignFluentBuilder => SignOutput, SignError;
    aws_sdk_kms::verify: VerifyFluentBuilder => VerifyOutput, VerifyError;
    aws_sdk_sts::get_caller_identity: GetCallerIdentityFluentBuilder => GetCallerIdentityOutput, GetCallerIdentityError;
    aws_sdk_ssm::get_parameter: GetParameterFluentBuilder => GetParameterOutput, GetParameterError;
    aws_sdk_ssm::send_command: SendCommandFluentBuilder => SendCommandOutput, SendCommandError;
    aws_sdk_ssm::get_command_invocation: GetCommandInvocationFluentBuilder => GetCommandInvocationOutput, GetCommandInvocationError;
    aws_sdk_ssm::list_commands: ListCommandsFluentBuilder => ListCommandsOutput, ListCommandsError;
    aws_sdk_ssm::cancel_command: CancelCommandFluentBuilder => CancelCommandOutput, CancelCommandError;
    aws_sdk_sfn::send_task_success: SendTaskSuccessFluentBuilder => SendTaskSuccessOutput, SendTaskSuccessError;
    aws_sdk_sfn::send_task_failure: SendTaskFailureFluentBuilder => SendTaskFailureOutput, SendTaskFailureError;
    aws_sdk_sts::assume_role: AssumeRoleFluentBuilder => AssumeRoleOutput, AssumeRoleError;
    aws_sdk_iam::list_user_tags: ListUserTagsFluentBuilder => ListUserTagsOutput, ListUserTagsError;
    aws_sdk_iam::list_role_tags: ListRoleTagsFluentBuilder => ListRoleTagsOutput, ListRoleTagsError;
    aws_sdk_iam::get_role: GetRoleFluentBuilder => GetRoleOutput, GetRoleError;
    aws_sdk_iam::simulate_principal_policy: SimulatePrincipalPolicyFluentBuilder => SimulatePrincipalPolicyOutput, SimulatePrincipalPolicyError;
    aws_sdk_sns::get_topic_attributes: GetTopicAttributesFluentBuilder => GetTopicAttributesOutput, GetTopicAttributesError;
    aws_sdk_sns::publish: PublishFluentBuilder => PublishOutput, PublishError;
    aws_sdk_guardduty::list_detectors: ListDetectorsFluentBuilder => ListDetectorsOutput, ListDetectorsError;
    aws_sdk_guardduty::list_findings: ListFindingsFluentBuilder => ListFindingsOutput, ListFindingsError;
    aws_sdk_guardduty::get_findings: GetFindingsFluentBuilder => GetFindingsOutput, GetFindingsError;
    aws_sdk_detective::list_graphs: ListGraphsFluentBuilder => ListGraphsOutput, ListGraphsError;
    aws_sdk_detective::list_investigations: ListInvestigationsFluentBuilder => ListInvestigationsOutput, ListInvestigationsError;
    aws_sdk_detective::get_investigation: GetInvestigationFluentBuilder => GetInvestigationOutput, GetInvestigationError;
    aws_sdk_detective::start_investigation: StartInvestigationFluentBuilder => StartInvestigationOutput, StartInvestigationError;
    aws_sdk_detective::list_indicators: ListIndicatorsFluentBuilder => ListIndicatorsOutput, ListIndicatorsError;
}

paged! {
    aws_sdk_ec2::describe_network_interfaces: DescribeNetworkInterfacesFluentBuilder, set_next_token, next_token;
    aws_sdk_ec2::describe_security_groups: DescribeSecurityGroupsFluentBuilder, set_next_token, next_token;
    aws_sdk_ec2::describe_tags: DescribeTagsFluentBuilder, set_next_token, next_token;
    aws_sdk_ec2::describe_snapshots: DescribeSnapshotsFluentBuilder, set_next_token, next_token;
    aws_sdk_ec2::describe_volumes: DescribeVolumesFluentBuilder, set_next_token, next_token;
    aws_sdk_ec2::describe_iam_instance_profile_associations: DescribeIamInstanceProfileAssociationsFluentBuilder, set_next_token, next_token;
    aws_sdk_elasticloadbalancingv2::describe_target_groups: DescribeTargetGroupsFluentBuilder, set_marker, next_marker;
    aws_sdk_s3::list_objects_v2: ListObjectsV2FluentBuilder, set_continuation_token, next_continuation_token;
    aws_sdk_guardduty::list_detectors: ListDetectorsFluentBuilder, set_next_token, next_token;
    aws_sdk_guardduty::list_findings: ListFindingsFluentBuilder, set_next_token, next_token;
    aws_sdk_detective::list_indicators: ListIndicatorsFluentBuilder, set_next_token, next_token;
    aws_sdk_ssm::list_commands: ListCommandsFluentBuilder, set_next_token, next_token;
}

/// Object versions page by two markers, and say when there is more.
impl Paged
    for aws_sdk_s3::operation::list_object_versions::builders::ListObjectVersionsFluentBuilder
{
    type Token = (Option<String>, Option<String>);

    fn with_page(self, token: Option<Self::Token>) -> Self {
        let (key, version) = token.unwrap_or_default();
        self.set_key_marker(key).set_version_id_marker(version)
    }

    fn next_page(output: &Self::Output) -> Option<Self::Token> {
        let token = (
            output.next_key_marker().map(str::to_owned),
            output.next_version_id_marker().map(str::to_owned),
        );
        (output.is_truncated() == Some(true) && token != (None, None)).then_some(token)
    }
}

/// IAM lists page by a marker that only counts while `IsTruncated` says so.
impl Paged
    for aws_sdk_iam::operation::list_attached_user_policies::builders::ListAttachedUserPoliciesFluentBuilder
{
    type Token = String;

    fn with_page(self, token: Option<String>) -> Self {
        self.set_marker(token)
    }

    fn next_page(output: &Self::Output) -> Option<String> {
        output
            .marker()
            .filter(|marker| output.is_truncated() && !marker.is_empty())
            .map(str::to_owned)
    }
}
