//! The finding's account and region, against the SDK's replay client (STS
//! answers in its XML): same account acts as the caller in the finding's
//! region; another account only through the responder role there, and a
//! role that cannot be assumed is one clear line naming it and what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use cordon_aws::accounts::{AccountError, CrossAccount, acting_clients};
use cordon_aws::client::AwsClients;

const CALLER: &str = "arn:aws:iam::111122223333:user/responder";

fn sts(status: u16, body: &str) -> ReplayEvent {
    let mut request = HttpRequest::new(SdkBody::empty());
    request
        .set_uri("https://sts.us-east-1.amazonaws.com/")
        .unwrap();
    let mut response = HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(body.to_owned()),
    );
    response.headers_mut().insert("content-type", "text/xml");
    ReplayEvent::new(request, response)
}

fn caller_identity() -> ReplayEvent {
    sts(
        200,
        &format!(
            r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult><Arn>{CALLER}</Arn><UserId>AIDAEXAMPLE</UserId><Account>111122223333</Account></GetCallerIdentityResult>
  <ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"#
        ),
    )
}

fn clients(events: Vec<ReplayEvent>) -> (AwsClients, StaticReplayClient) {
    let replay = StaticReplayClient::new(events);
    let config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        )))
        .http_client(replay.clone())
        .build();
    (AwsClients::builder(&config).build().unwrap(), replay)
}

#[tokio::test]
async fn same_account_acts_as_the_caller_in_the_finding_s_region() {
    let (caller, replay) = clients(vec![caller_identity()]);
    let (acting, scope) = acting_clients(
        &caller,
        "aws",
        "111122223333",
        "eu-west-1",
        &CrossAccount::default(),
        "cordon-case-0",
    )
    .await
    .unwrap();
    assert_eq!(acting.region, "eu-west-1");
    assert_eq!(scope.assumed_role, None);
    assert_eq!(scope.acting_as, CALLER);
    assert_eq!(replay.actual_requests().count(), 1, "no AssumeRole");
}

#[tokio::test]
async fn a_role_that_cannot_be_assumed_is_one_line_naming_it_and_what_to_do() {
    let denied = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::111122223333:user/responder is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::222233334444:role/cordon-responder</Message></Error>
  <RequestId>r2</RequestId>
</ErrorResponse>"#;
    let (caller, replay) = clients(vec![caller_identity(), sts(403, denied)]);
    let err = acting_clients(
        &caller,
        "aws",
        "222233334444",
        "us-east-1",
        &CrossAccount {
            role_name: "cordon-responder".to_string(),
            external_id: Some("incident-42".to_string()),
        },
        "cordon-case-0",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AccountError::AssumeRole { .. }), "{err:?}");
    let text = err.to_string();
    assert_eq!(
        text,
        format!(
            "the finding is from account 222233334444 and cordon (as {CALLER}) cannot assume arn:aws:iam::222233334444:role/cordon-responder there (AccessDenied): create the role in account 222233334444 with a trust policy that lets {CALLER} call sts:AssumeRole with the external id given, or name another with --assume-role-name; nothing was changed"
        )
    );
    assert_eq!(replay.actual_requests().count(), 2);
    let body = replay
        .actual_requests()
        .nth(1)
        .unwrap()
        .body()
        .bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    assert!(body.contains("Action=AssumeRole"), "{body}");
    assert!(body.contains("ExternalId=incident-42"), "{body}");
}

#[tokio::test]
async fn a_malformed_account_or_role_name_is_refused_before_any_call() {
    for (account, role) in [("2222", "cordon-responder"), ("222233334444", "a/b")] {
        let (caller, replay) = clients(vec![caller_identity()]);
        let cross = CrossAccount {
            role_name: role.to_string(),
            external_id: None,
        };
        let err = acting_clients(&caller, "aws", account, "us-east-1", &cross, "s")
            .await
            .unwrap_err();
        assert!(matches!(err, AccountError::Malformed { .. }), "{err:?}");
        // The account is checked before any call; the role name after the
        // caller's identity says it is needed, never in an ARN.
        assert!(replay.actual_requests().count() <= 1);
    }
}

fn assumed_role() -> ReplayEvent {
    sts(
        200,
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials><AccessKeyId>ASIAEXAMPLE000000001</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
    <AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:cordon</AssumedRoleId><Arn>arn:aws:sts::222233334444:assumed-role/cordon-responder/cordon</Arn></AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>r2</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#,
    )
}

/// How long `second` waits for an `ec2-mutating` token right after `first`
/// took one (the test sizes the bucket to one token, four a second).
async fn second_token_wait(first: &AwsClients, second: &AwsClients) -> std::time::Duration {
    let bucket = cordon_aws::ratelimit::Bucket::Ec2Mutating;
    first.limits.acquire(bucket).await;
    let start = std::time::Instant::now();
    second.limits.acquire(bucket).await;
    start.elapsed()
}

/// Every case of a burst builds its own clients for its finding's account
/// and region; they must draw on one budget per (account, region), not one
/// each, or a burst of N findings would get N times EC2's budget.
#[tokio::test]
async fn cases_in_one_account_and_region_share_one_budget() {
    use cordon_aws::ratelimit::{Bucket, BucketSize};
    let (caller, _replay) = clients(vec![
        caller_identity(),
        caller_identity(),
        caller_identity(),
        assumed_role(),
        caller_identity(),
        assumed_role(),
    ]);
    caller.limits.resize(
        Bucket::Ec2Mutating,
        BucketSize {
            capacity: 1,
            refill_per_second: 4.0,
        },
    );
    let acting = |account: &'static str| {
        let caller = caller.clone();
        async move {
            acting_clients(
                &caller,
                "aws",
                account,
                "eu-west-1",
                &CrossAccount::default(),
                "cordon-case-0",
            )
            .await
            .unwrap()
            .0
        }
    };
    let (one, two) = (acting("111122223333").await, acting("111122223333").await);
    let waited = second_token_wait(&one, &two).await;
    assert!(
        waited >= std::time::Duration::from_millis(200),
        "two cases in eu-west-1 drew on separate buckets (waited {waited:?})"
    );
    // The caller's own region has its own budget.
    let start = std::time::Instant::now();
    caller.limits.acquire(Bucket::Ec2Mutating).await;
    assert!(start.elapsed() < std::time::Duration::from_millis(100));

    let (member_one, member_two) = (acting("222233334444").await, acting("222233334444").await);
    let waited = second_token_wait(&member_one, &member_two).await;
    assert!(
        waited >= std::time::Duration::from_millis(200),
        "two cases in the member account drew on separate buckets (waited {waited:?})"
    );
}
