//! The SDK clients reach the emulator through the endpoint override, the
//! harness hands each test a clean emulator, and the call counter counts.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Tag};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use cordon_tests::{ACCOUNT_ID, Emulator, emulator};

#[tokio::test]
async fn sdk_clients_reach_the_emulator() {
    let aws = emulator().await;
    let clients = aws.clients();
    assert_eq!(clients.endpoint.as_deref(), Some(aws.endpoint()));
    assert_eq!(clients.region, cordon_tests::REGION);

    // EC2
    let vpc = clients
        .ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc.vpc().and_then(|vpc| vpc.vpc_id()).expect("vpc id");
    let described = clients
        .ec2
        .describe_vpcs()
        .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
        .send()
        .await
        .expect("DescribeVpcs");
    let vpcs = described.vpcs();
    assert_eq!(vpcs.len(), 1);
    assert_eq!(vpcs[0].cidr_block(), Some("10.42.0.0/16"));

    // S3, path style, with a SHA-256 checksum stored and returned.
    clients
        .s3
        .create_bucket()
        .bucket("cordon-evidence")
        .send()
        .await
        .expect("CreateBucket");
    let put = clients
        .s3
        .put_object()
        .bucket("cordon-evidence")
        .key("case-1/console.txt")
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from_static(b"console output"))
        .send()
        .await
        .expect("PutObject");
    let sent_checksum = put
        .checksum_sha256()
        .expect("PutObject checksum")
        .to_owned();
    let got = clients
        .s3
        .get_object()
        .bucket("cordon-evidence")
        .key("case-1/console.txt")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("GetObject");
    assert_eq!(got.checksum_sha256(), Some(sent_checksum.as_str()));
    let body = got.body.collect().await.expect("GetObject body");
    assert_eq!(body.into_bytes().as_ref(), b"console output");

    // IAM
    clients
        .iam
        .create_user()
        .user_name("suspect")
        .send()
        .await
        .expect("CreateUser");
    let users = clients.iam.list_users().send().await.expect("ListUsers");
    let names: Vec<&str> = users.users().iter().map(|user| user.user_name()).collect();
    assert_eq!(names, ["suspect"]);

    // STS
    let identity = clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(identity.account(), Some(ACCOUNT_ID));
}

#[tokio::test]
async fn each_guard_sees_a_clean_emulator() {
    {
        let aws = emulator().await;
        aws.clients()
            .s3
            .create_bucket()
            .bucket("left-over")
            .send()
            .await
            .expect("CreateBucket");
        let listed = aws
            .clients()
            .s3
            .list_buckets()
            .send()
            .await
            .expect("ListBuckets");
        assert_eq!(listed.buckets().len(), 1);
    }
    let aws = emulator().await;
    let listed = aws
        .clients()
        .s3
        .list_buckets()
        .send()
        .await
        .expect("ListBuckets");
    assert!(listed.buckets().is_empty(), "{:?}", listed.buckets());
    let vpcs = aws
        .clients()
        .ec2
        .describe_vpcs()
        .send()
        .await
        .expect("DescribeVpcs");
    // Only the default VPC that every fresh region has.
    assert!(vpcs.vpcs().iter().all(|vpc| vpc.is_default() == Some(true)));
}

#[tokio::test]
async fn call_counter_counts_each_call_sent() {
    let aws = emulator().await;
    let clients = aws.clients();
    assert_eq!(clients.calls.total(), 0);

    let vpc = clients
        .ec2
        .create_vpc()
        .cidr_block("10.7.0.0/16")
        .send()
        .await
        .expect("CreateVpc");
    let vpc_id = vpc.vpc().and_then(|vpc| vpc.vpc_id()).expect("vpc id");
    for _ in 0..2 {
        clients
            .ec2
            .create_tags()
            .resources(vpc_id)
            .tags(Tag::builder().key("cordon:case").value("case-1").build())
            .send()
            .await
            .expect("CreateTags");
    }
    clients
        .ec2
        .describe_vpcs()
        .vpc_ids(vpc_id)
        .send()
        .await
        .expect("DescribeVpcs");
    clients
        .sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    // A failed call is still a call sent (NoSuchBucket is not retried).
    let missing = clients
        .s3
        .head_bucket()
        .bucket("no-such-bucket")
        .send()
        .await;
    assert!(missing.is_err());

    let expected = BTreeMap::from([
        ("EC2.CreateTags".to_owned(), 2),
        ("EC2.CreateVpc".to_owned(), 1),
        ("EC2.DescribeVpcs".to_owned(), 1),
        ("S3.HeadBucket".to_owned(), 1),
        ("STS.GetCallerIdentity".to_owned(), 1),
    ]);
    assert_eq!(clients.calls.snapshot(), expected);
    assert_eq!(clients.calls.operations(), expected);
    assert_eq!(clients.calls.total(), 6);
    assert_eq!(clients.calls.operations_total(), 6);
    assert_eq!(clients.calls.mutating_total(), 3);

    // Clones count into the same counter; reset clears it for all of them.
    let clone = clients.clone();
    clone
        .sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(clients.calls.total(), 7);
    clients.calls.reset();
    assert_eq!(clone.calls.total(), 0);
}

#[tokio::test]
async fn own_emulator_stops_when_dropped() {
    let own = Emulator::start().await.expect("start a private emulator");
    let port = own.port();
    let config = own.sdk_config().await;
    let sts = aws_sdk_sts::Client::new(&config);
    let identity = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(identity.account(), Some(ACCOUNT_ID));
    drop(own);
    let refused = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(refused.is_err(), "moto still listens on {port} after drop");
}
