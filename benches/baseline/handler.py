"""The usual GuardDuty response Lambda, written the straightforward way.

This is the baseline cordon is measured against (issue 11, item 5b): what a
team typically deploys behind an EventBridge rule. One boto3 call after
another, no per-ENI handling, no pre-state, no verification, no journal:

* an EC2 finding: tag the instance with its original security groups, swap
  all of them for one isolation group (ModifyInstanceAttribute), snapshot
  every attached EBS volume;
* an IAM access-key finding: deactivate the key.

The isolation group is created ahead of time (by infrastructure code) and
passed in ISOLATION_GROUP_ID, as such Lambdas usually get it. Run as a
process, the way the benchmark times it:

    python handler.py FINDING.json
"""

import json
import os
import sys

import boto3


def lambda_handler(event, context):
    finding = event.get("detail", event)
    kind = finding["resource"]["resourceType"]
    if kind == "Instance":
        return contain_instance(finding)
    if kind == "AccessKey":
        return deactivate_key(finding)
    return {"action": "none", "resource-type": kind}


def contain_instance(finding):
    ec2 = boto3.client("ec2")
    instance_id = finding["resource"]["instanceDetails"]["instanceId"]
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    instance = reservations[0]["Instances"][0]
    original = sorted({group["GroupId"] for group in instance["SecurityGroups"]})
    ec2.create_tags(
        Resources=[instance_id],
        Tags=[
            {"Key": "original-security-groups", "Value": ",".join(original)},
            {"Key": "quarantined-by-finding", "Value": finding["id"]},
        ],
    )
    ec2.modify_instance_attribute(
        InstanceId=instance_id, Groups=[os.environ["ISOLATION_GROUP_ID"]]
    )
    snapshots = []
    for mapping in instance.get("BlockDeviceMappings", []):
        volume_id = mapping["Ebs"]["VolumeId"]
        snapshot = ec2.create_snapshot(
            VolumeId=volume_id,
            Description=f"GuardDuty finding {finding['id']} on {instance_id}",
            TagSpecifications=[
                {
                    "ResourceType": "snapshot",
                    "Tags": [{"Key": "quarantined-by-finding", "Value": finding["id"]}],
                }
            ],
        )
        snapshots.append(snapshot["SnapshotId"])
    return {
        "action": "isolated",
        "instance-id": instance_id,
        "original-groups": original,
        "snapshots": snapshots,
    }


def deactivate_key(finding):
    details = finding["resource"]["accessKeyDetails"]
    boto3.client("iam").update_access_key(
        UserName=details["userName"],
        AccessKeyId=details["accessKeyId"],
        Status="Inactive",
    )
    return {"action": "deactivated", "access-key-id": details["accessKeyId"]}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        print(json.dumps(lambda_handler(json.load(f), None)))
