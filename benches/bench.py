#!/usr/bin/env python3
"""cordon's benchmark harness (issue 11, item 5). Run it through scripts/bench.

Every tool talks to the same local emulator (moto) through the same loopback
latency proxy (crates/cordon-latency-proxy: a delay per request, 40 ms by
default, and EC2's published throttling buckets), on the same environment
provisioned by `cordon-gameday provision`, with the emulator reset before
every run. Runs of different tools are interleaved; medians are reported.

Parts (select with --only; scenario names work too):
  a  cordon: the full ec2-compromised-high playbook (wall time, and time to
     the isolate step's step-verified journal record), with the isolation
     groups present and in a fresh VPC; isolate + snapshot and key
     deactivation (benches/playbooks/); one hung CreateSecurityGroup (hang)
  b  the same response as a straightforward boto3 Lambda handler
     (benches/baseline/handler.py)
  c  Cloud Custodian policies (benches/c7n/), c7n installed in its own venv
  d  bursts of findings on as many instances
  e  criterion micro-benchmarks of parse + route + plan per finding

Results: a table on stdout, results.json and results.md under --out.
Every API call is counted at the proxy, so all tools are counted the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ROOT / "benches"
VENV = ROOT / ".venv"
C7N_VERSION = "0.9.53"
REGION = "us-east-1"
# The emulator accepts any credentials; these are the documented example pair.
EMULATOR_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
# cordon's default isolation-group-name and its untrack companion.
ISOLATION_GROUP = "cordon-isolation"
UNTRACK_GROUP = "cordon-isolation-untrack"
EVIDENCE_BUCKET = "cordon-evidence-bench"
# The bottleneck bucket of isolation in a burst (AWS-NOTES, "Throttling").
MNIA = "ModifyNetworkInterfaceAttribute"
MNIA_CAPACITY, MNIA_REFILL = 100.0, 5.0
# Findings a burst works at once: enough to keep the bottleneck bucket busy
# (each finding waits on it for most of its time), few enough for 2 cores.
BURST_CONCURRENCY = 32
# The figures issue 11 reports, for the side-by-side table.
ISSUE_FIGURES = {
    "cordon-full": "1.6 s, 41 calls",
    "cordon-full:verified": "0.34 s to every ENI isolated",
    "cordon-isolate-snapshot": "0.68 s",
    "boto3-ec2": "0.85 s",
    "c7n-ec2": "1.65 s (one of two ENIs isolated)",
    "cordon-hang": "31.8 s to containment",
}
# Issue 11 targets at 40 ms, for the table.
TARGETS = {
    "verified-groups-present-s": 0.25,
    "verified-hang-s": 6.0,
    "full-playbook-s": 0.6,
    "ratio-vs-baseline": 0.4,
    "ratio-vs-c7n": 0.4,
    "per-finding-us": 50.0,
}


class BenchError(Exception):
    """Something the benchmark needs did not work; the message says what."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(endpoint: str) -> dict[str, str]:
    """The child environment: the emulator's credentials and region, and no
    way to reach anything but 127.0.0.1 (no profile, no instance metadata)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("CORDON_EVIDENCE_BUCKET", "CORDON_PLAYBOOKS")
    }
    env.update(EMULATOR_CREDENTIALS)
    env.update(
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


# ---------------------------------------------------------------------------
# Processes


@dataclass
class Proc:
    argv: list[str]
    rc: int
    start_unix: float
    wall_s: float
    max_rss_kb: int
    stdout: str
    stderr: str


# GNU time reports the peak RSS of the command alone. The kernel's figure for
# a child of this process (wait4) starts at this process's own size, because
# the child is a copy of it until it execs: about 70 MB of Python here.
GNU_TIME = Path("/usr/bin/time")


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_process(argv: list[str], env: dict[str, str], timeout: float = 300.0) -> Proc:
    """Runs one process to its end: wall time from just before it is started
    to its exit, and its peak RSS (GNU time's %M, or wait4's as a fallback)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        wrapped = [str(GNU_TIME), "-f", "%M", "-o", rss.name] + argv if GNU_TIME.exists() else argv
        start_unix = time.time()
        t0 = time.perf_counter()
        # Its own process group, so a timeout stops the command, not just GNU time.
        proc = subprocess.Popen(wrapped, env=env, cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        timer = threading.Timer(timeout, kill_group, [proc.pid])
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        reported = rss.read().strip().splitlines()
        max_rss_kb = int(reported[-1]) if reported and reported[-1].isdigit() else usage.ru_maxrss
        out.seek(0)
        err.seek(0)
        return Proc(
            argv=argv,
            rc=proc.returncode,
            start_unix=start_unix,
            wall_s=wall,
            max_rss_kb=max_rss_kb,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def checked(proc: Proc, what: str) -> Proc:
    if proc.rc != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise BenchError(f"{what} failed (exit {proc.rc}): {tail}")
    return proc


def wait_http(url: str, proc: subprocess.Popen, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode} while starting")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{what} did not answer {url} within {seconds:.0f} s")


def stop_process(proc: subprocess.Popen) -> None:
    """Asks a helper process started here to stop; kills it after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Emulator:
    """moto's server from .venv on a free loopback port; reset between runs."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "emulator.log", "wb")
        self.proc = subprocess.Popen(
            [str(VENV / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_http(f"{self.url}/moto-api/", self.proc, "the emulator")

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).read()

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


class Proxy:
    """The latency proxy in front of the emulator, logging every request."""

    def __init__(self, binary: Path, emulator: Emulator, delay_ms: int, log_path: Path, hang_operation: str | None = None):
        self.log_path = log_path
        argv = [
            str(binary),
            "--upstream",
            f"127.0.0.1:{emulator.port}",
            "--delay-ms",
            str(delay_ms),
            "--ec2-throttle",
            "--log",
            str(log_path),
        ]
        if hang_operation:
            argv += ["--hang-operation", hang_operation]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        match = re.fullmatch(r"listening on (127\.0\.0\.1:\d+)", line)
        if not match:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise BenchError(f"the latency proxy did not start: {line} {err}".strip())
        self.url = f"http://{match.group(1)}"

    def offset(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def lines_since(self, offset: int) -> list[dict]:
        if not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return [json.loads(line) for line in f.read().splitlines() if line.strip()]

    def stop(self) -> None:
        stop_process(self.proc)


# ---------------------------------------------------------------------------
# Build and install


@dataclass
class Tools:
    cordon: Path
    gameday: Path
    proxy: Path
    python: Path
    custodian: Path | None
    target_dir: Path
    profile: str


def build(profile: str) -> Tools:
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache" / "cordon-target")))
    argv = ["cargo", "build", "--quiet", "-p", "cordon-cli", "-p", "cordon-gameday", "-p", "cordon-latency-proxy"]
    if profile == "release":
        argv.append("--release")
    log(f"building cordon, cordon-gameday and latency-proxy ({profile} profile)")
    subprocess.run(argv, cwd=ROOT, check=True)
    out = target_dir / ("release" if profile == "release" else "debug")
    return Tools(
        cordon=out / "cordon",
        gameday=out / "cordon-gameday",
        proxy=out / "latency-proxy",
        python=VENV / "bin" / "python",
        custodian=None,
        target_dir=target_dir,
        profile=profile,
    )


def ensure_c7n(venv: Path) -> Path:
    """Cloud Custodian, pinned, in a virtualenv of its own (it pins its own boto3)."""
    custodian = venv / "bin" / "custodian"
    stamp = venv / ".c7n-version"
    if custodian.exists() and stamp.exists() and stamp.read_text().strip() == C7N_VERSION:
        return custodian
    log(f"installing c7n=={C7N_VERSION} into {venv}")
    python = os.environ.get("PYTHON", "python3")
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"c7n=={C7N_VERSION}"], check=True)
    stamp.write_text(C7N_VERSION + "\n")
    return custodian


# ---------------------------------------------------------------------------
# Environment


def clients(endpoint: str):
    import boto3

    session = boto3.session.Session(region_name=REGION, **{k.lower(): v for k, v in EMULATOR_CREDENTIALS.items()})
    return {name: session.client(name, endpoint_url=endpoint) for name in ("ec2", "iam", "sts")}


def provision(tools: Tools, emulator: Emulator, directory: Path) -> dict:
    """One compromised instance, straight to the emulator (not timed)."""
    directory.mkdir(parents=True, exist_ok=True)
    checked(
        run_process(
            [
                str(tools.gameday),
                "provision",
                "--finding-out",
                str(directory / "finding.json"),
                "--state-out",
                str(directory / "before.json"),
                "--fixture-out",
                str(directory / "fixture.json"),
            ],
            base_env(emulator.url),
        ),
        "cordon-gameday provision",
    )
    return {
        "dir": directory,
        "finding": directory / "finding.json",
        "fixture": instance_fixture(json.loads((directory / "fixture.json").read_text())),
    }


def instance_fixture(fixture: dict) -> dict:
    """The ids the bench needs of the compromised instance (the fixture's
    first instance, the one the finding names), from the builder's fixture."""
    instance = next(iter(fixture["instances"].values()))
    return {
        "instance-id": instance["id"],
        "vpc-id": instance["vpc-id"],
        "enis": instance["enis"],
        "volume-ids": [volume["id"] for volume in instance["volumes"]],
    }


def create_isolation_groups(ec2, vpc_id: str) -> str:
    """The isolation group (no rules) and its allow-all untrack companion,
    as cordon would leave them after an earlier case in this VPC; the boto3
    baseline and c7n are handed the same isolation group."""
    isolation = ec2.create_security_group(
        GroupName=ISOLATION_GROUP,
        Description="cordon isolation: no ingress, no egress",
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "cordon:role", "Value": "isolation"}]}],
    )["GroupId"]
    ec2.revoke_security_group_egress(GroupId=isolation, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    untrack = ec2.create_security_group(
        GroupName=UNTRACK_GROUP,
        Description="cordon untrack: allow-all",
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "cordon:role", "Value": "untrack"}]}],
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=untrack,
        IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}],
    )
    ec2.authorize_security_group_egress(GroupId=untrack, IpPermissions=[{"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    return isolation


def isolation_group_of(ec2, vpc_id: str) -> str | None:
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [ISOLATION_GROUP]}]
    )["SecurityGroups"]
    return groups[0]["GroupId"] if groups else None


def create_key_user(aws, directory: Path) -> dict:
    """An IAM user with one access key, and a GuardDuty finding naming it
    (the shape of tests/fixtures/findings/iam-user-key.json)."""
    directory.mkdir(parents=True, exist_ok=True)
    iam = aws["iam"]
    user = iam.create_user(UserName="deploy-bot")["User"]
    key = iam.create_access_key(UserName="deploy-bot")["AccessKey"]["AccessKeyId"]
    account = aws["sts"].get_caller_identity()["Account"]
    finding = json.loads((ROOT / "tests" / "fixtures" / "findings" / "iam-user-key.json").read_text())
    finding["accountId"] = account
    finding["region"] = REGION
    finding["arn"] = finding["arn"].replace("111122223333", account)
    finding["resource"]["accessKeyDetails"].update(accessKeyId=key, principalId=user["UserId"], userName=user["UserName"])
    path = directory / "finding.json"
    path.write_text(json.dumps(finding, indent=2))
    return {"dir": directory, "finding": path, "user": user["UserName"], "key": key}


def ec2_effects(ec2, fixture: dict) -> dict:
    """What a tool actually changed: ENIs in exactly the isolation group,
    volumes with a snapshot."""
    isolation = isolation_group_of(ec2, fixture["vpc-id"])
    eni_ids = [e["id"] for e in fixture["enis"]]
    enis = ec2.describe_network_interfaces(NetworkInterfaceIds=eni_ids)["NetworkInterfaces"]
    isolated = sum(1 for e in enis if isolation and [g["GroupId"] for g in e["Groups"]] == [isolation])
    snapshots = ec2.describe_snapshots(Filters=[{"Name": "volume-id", "Values": fixture["volume-ids"]}])["Snapshots"]
    covered = {s["VolumeId"] for s in snapshots}
    return {
        "enis-isolated": isolated,
        "enis": len(eni_ids),
        "volumes-snapshotted": len(covered & set(fixture["volume-ids"])),
        "volumes": len(fixture["volume-ids"]),
    }


def key_effects(iam, user: str, key: str) -> dict:
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    status = next((k["Status"] for k in keys if k["AccessKeyId"] == key), "deleted")
    return {"key-status": status}


# ---------------------------------------------------------------------------
# Journals and proxy logs


def parse_rfc3339(text: str) -> float:
    """`2026-11-27T02:00:52.381960002Z` as Unix time (nanoseconds cut to micro)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        raise BenchError(f"journal timestamp `{text}` is not RFC 3339")
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    moment = datetime.fromisoformat(base + zone)
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


def journal_records(state_dir: Path) -> dict[str, list[dict]]:
    cases = {}
    for path in sorted((state_dir / "cases").glob("*/journal.jsonl")):
        cases[path.parent.name] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return cases


def event_of(record: dict) -> dict:
    event = record.get("event", {})
    return event if isinstance(event, dict) else {"event": event}


def first_event_time(records: list[dict], event: str, step: str | None = None) -> float | None:
    for record in records:
        e = event_of(record)
        if e.get("event") == event and (step is None or e.get("step") == step):
            return parse_rfc3339(record["at"])
    return None


def case_outcome(records: list[dict]) -> dict:
    finished = [event_of(r) for r in records if event_of(r).get("event") == "case-finished"]
    failures = [event_of(r) for r in records if event_of(r).get("event") == "step-failed"]
    throttled = [f for f in failures if re.search(r"throttl|RequestLimitExceeded|rate exceeded", json.dumps(f), re.I)]
    return {
        "status": finished[-1].get("status") if finished else None,
        "isolate-verified": first_event_time(records, "step-verified", "isolate") is not None,
        "step-failures": len(failures),
        "throttling-failures": len(throttled),
    }


def by_operation(lines: list[dict]) -> dict[str, int]:
    """Requests per `service:Operation`, as the proxy saw them."""
    return dict(sorted(Counter(f"{l['service']}:{l['operation']}" for l in lines).items()))


def call_figures(lines: list[dict], start_unix: float, isolation_op: str) -> dict:
    forwarded = [l for l in lines if l["outcome"] == "forwarded"]
    isolating = [l["end-unix"] for l in forwarded if l["operation"] == isolation_op and l.get("status") == 200]
    return {
        "calls": len(lines),
        "throttled": sum(1 for l in lines if l["outcome"] == "throttled"),
        "hung": sum(1 for l in lines if l["outcome"] == "hung"),
        "by-operation": by_operation(lines),
        "isolated-s": (max(isolating) - start_unix) if isolating else None,
    }


# ---------------------------------------------------------------------------
# Scenarios (parts a, b, c)


@dataclass
class Scenario:
    name: str
    part: str
    tool: str
    what: str
    kind: str  # "ec2" or "key"
    playbooks: str | None = None
    groups_present: bool = True
    evidence: bool = False
    hang_operation: str | None = None
    # The call that moves an ENI (or the instance) into the isolation group.
    isolation_op: str = MNIA


SCENARIOS = [
    Scenario("cordon-full", "a", "cordon", "ec2-compromised-high, isolation groups present", "ec2", "playbooks", evidence=True),
    Scenario("cordon-full-fresh-vpc", "a", "cordon", "ec2-compromised-high, fresh VPC (groups created)", "ec2", "playbooks", groups_present=False, evidence=True),
    Scenario("cordon-hang", "a", "cordon", "ec2-compromised-high, fresh VPC, first CreateSecurityGroup never answered", "ec2", "playbooks", groups_present=False, evidence=True, hang_operation="CreateSecurityGroup"),
    Scenario("cordon-isolate-snapshot", "a", "cordon", "isolate + snapshot (benches/playbooks)", "ec2", "benches/playbooks/isolate-snapshot.yaml"),
    Scenario("cordon-isolate-snapshot-parallel", "a", "cordon", "isolate + snapshot side by side (benches/playbooks-parallel)", "ec2", "benches/playbooks-parallel/isolate-snapshot.yaml"),
    Scenario("boto3-ec2", "b", "boto3", "Lambda handler: tag, ModifyInstanceAttribute(Groups), snapshot each volume", "ec2", isolation_op="ModifyInstanceAttribute"),
    Scenario("c7n-ec2", "c", "c7n", "policy: modify-security-groups (isolation group) + snapshot", "ec2"),
    Scenario("cordon-key", "a", "cordon", "deactivate-access-key (benches/playbooks)", "key", "benches/playbooks/deactivate-key.yaml"),
    Scenario("boto3-key", "b", "boto3", "Lambda handler: UpdateAccessKey Inactive", "key"),
    Scenario("c7n-key", "c", "c7n", "policy: iam-user remove-keys (disable, matched)", "key"),
]


@dataclass
class Context:
    tools: Tools
    emulator: Emulator
    proxy: Proxy
    delay_ms: int
    work: Path
    aws: dict = field(default_factory=dict)
    out: Path | None = None

    def checkpoint(self, key: str, rows: list[dict]) -> None:
        """Every finished run goes to `results.partial.json` at once, so a
        long benchmark that dies (disk full, killed) keeps what it measured."""
        if self.out is None:
            return
        path = self.out / "results.partial.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        data[key] = rows
        path.write_text(json.dumps(data, indent=2) + "\n")


def prepare(ctx: Context, scenario: Scenario, directory: Path) -> dict:
    """Fresh emulator state, then exactly what the scenario starts from."""
    ctx.emulator.reset()
    if scenario.kind == "key":
        return create_key_user(ctx.aws, directory)
    env = provision(ctx.tools, ctx.emulator, directory)
    vpc = env["fixture"]["vpc-id"]
    env["isolation-group"] = create_isolation_groups(ctx.aws["ec2"], vpc) if scenario.groups_present else None
    if scenario.evidence:
        checked(run_process([str(ctx.tools.cordon), "evidence", "init", EVIDENCE_BUCKET], base_env(ctx.emulator.url)), "cordon evidence init")
    return env


def command(ctx: Context, scenario: Scenario, env: dict, endpoint: str) -> tuple[list[str], dict[str, str]]:
    child = base_env(endpoint)
    directory: Path = env["dir"]
    if scenario.tool == "cordon":
        argv = [
            str(ctx.tools.cordon),
            "run",
            str(env["finding"]),
            "--yes",
            "--output",
            "json",
            "--state-dir",
            str(directory / "state"),
            "--playbooks",
            str(ROOT / scenario.playbooks),
        ]
        if scenario.evidence:
            argv += ["--evidence-bucket", EVIDENCE_BUCKET]
        return argv, child
    if scenario.tool == "boto3":
        if env.get("isolation-group"):
            child["ISOLATION_GROUP_ID"] = env["isolation-group"]
        return [str(ctx.tools.python), str(BENCHES / "baseline" / "handler.py"), str(env["finding"])], child
    if scenario.tool == "c7n":
        if ctx.tools.custodian is None:
            raise BenchError("c7n is not installed (part c was not selected)")
        if scenario.kind == "ec2":
            template, values = "ec2-isolate-snapshot.yml", {"instance_id": env["fixture"]["instance-id"], "isolation_group_id": env["isolation-group"]}
        else:
            template, values = "iam-deactivate-key.yml", {"user_name": env["user"], "access_key_id": env["key"]}
        policy = directory / template
        policy.write_text(string.Template((BENCHES / "c7n" / template).read_text()).substitute(values))
        argv = [str(ctx.tools.custodian), "run", "--cache-period", "0", "--region", REGION, "-s", str(directory / "c7n-output"), str(policy)]
        return argv, child
    raise BenchError(f"unknown tool {scenario.tool}")


def run_scenario(ctx: Context, scenario: Scenario, run_id: str) -> dict:
    directory = ctx.work / "runs" / f"{scenario.name}-{run_id}"
    env = prepare(ctx, scenario, directory)
    proxy = ctx.proxy
    if scenario.hang_operation:
        proxy = Proxy(ctx.tools.proxy, ctx.emulator, ctx.delay_ms, directory / "proxy-hang.jsonl", scenario.hang_operation)
    try:
        argv, child = command(ctx, scenario, env, proxy.url)
        offset = proxy.offset()
        proc = run_process(argv, child, timeout=180)
        lines = proxy.lines_since(offset)
    finally:
        if proxy is not ctx.proxy:
            proxy.stop()
    result = {
        "scenario": scenario.name,
        "run": run_id,
        "rc": proc.rc,
        "wall-s": proc.wall_s,
        "peak-rss-mb": proc.max_rss_kb / 1024,
    }
    result.update(call_figures(lines, proc.start_unix, scenario.isolation_op))
    ok = proc.rc == 0
    if scenario.tool == "cordon":
        cases = journal_records(directory / "state")
        records = next(iter(cases.values()), [])
        verified = first_event_time(records, "step-verified", "isolate")
        result["verified-s"] = (verified - proc.start_unix) if verified else None
        result["case"] = case_outcome(records)
        ok = ok and result["case"]["status"] == "completed"
    if scenario.kind == "ec2":
        result["effects"] = ec2_effects(ctx.aws["ec2"], env["fixture"])
        contained = result["effects"]["enis-isolated"] == result["effects"]["enis"]
    else:
        result["effects"] = key_effects(ctx.aws["iam"], env["user"], env["key"])
        contained = result["effects"]["key-status"] == "Inactive"
    # The other tools' partial effects are a finding to report, not a failed
    # run; cordon must contain what it says it contained.
    result["ok"] = ok and (contained or scenario.tool != "cordon")
    if not ok:
        result["error"] = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
    elif not result["ok"]:
        result["error"] = f"exited 0 but did not contain: {json.dumps(result['effects'])}"
    return result


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(scenario: Scenario, runs: list[dict]) -> dict:
    ok = [r for r in runs if r["ok"]]
    basis = ok or runs
    effects = Counter(json.dumps(r["effects"], sort_keys=True) for r in runs)
    return {
        "scenario": scenario.name,
        "part": scenario.part,
        "tool": scenario.tool,
        "what": scenario.what,
        "runs": len(runs),
        "ok-runs": len(ok),
        "wall-s": median([r["wall-s"] for r in basis]),
        "wall-min-s": min((r["wall-s"] for r in basis), default=None),
        "wall-max-s": max((r["wall-s"] for r in basis), default=None),
        "isolated-s": median([r["isolated-s"] for r in basis]),
        "verified-s": median([r.get("verified-s") for r in basis]),
        "calls": median([r["calls"] for r in basis]),
        "throttled": sum(r["throttled"] for r in runs),
        "peak-rss-mb": median([r["peak-rss-mb"] for r in basis]),
        "effects": dict(effects),
        "errors": sorted({r["error"] for r in runs if not r["ok"] and r.get("error")}),
    }


def run_comparison(ctx: Context, scenarios: list[Scenario], runs: int, warmup: int) -> tuple[list[dict], list[dict]]:
    results: list[dict] = []
    total = warmup + runs
    for i in range(total):
        counted = i >= warmup
        # Rotate the order every round so no tool always runs first or last.
        order = scenarios[i % len(scenarios):] + scenarios[: i % len(scenarios)]
        for scenario in order:
            label = f"run {i - warmup + 1}/{runs}" if counted else f"warm-up {i + 1}/{warmup}"
            result = run_scenario(ctx, scenario, f"{i}")
            log(
                f"{label} {scenario.name}: {result['wall-s']:.3f} s, {result['calls']} calls"
                + ("" if result["ok"] else f" FAILED (exit {result['rc']})")
            )
            if counted:
                results.append(result)
                ctx.checkpoint("runs", results)
    summaries = [summarise(s, [r for r in results if r["scenario"] == s.name]) for s in scenarios]
    return results, summaries


# ---------------------------------------------------------------------------
# Part d: bursts


def supports_concurrency(tools: Tools) -> bool:
    proc = run_process([str(tools.cordon), "run", "--help"], dict(os.environ))
    return "--concurrency" in proc.stdout


def run_burst(ctx: Context, size: int, run_id: str, concurrent: bool) -> dict:
    directory = ctx.work / "bursts" / f"burst-{size}-{run_id}"
    findings = directory / "findings"
    findings.mkdir(parents=True, exist_ok=True)
    ctx.emulator.reset()
    log(f"burst of {size}: provisioning {size} instances")
    checked(run_process([str(ctx.tools.cordon), "evidence", "init", EVIDENCE_BUCKET], base_env(ctx.emulator.url)), "cordon evidence init")
    with ThreadPoolExecutor(max_workers=2) as pool:
        fixtures = list(pool.map(lambda i: provision(ctx.tools, ctx.emulator, directory / "instances" / f"{i:03d}"), range(size)))
    for i, env in enumerate(fixtures):
        create_isolation_groups(ctx.aws["ec2"], env["fixture"]["vpc-id"])
        shutil.copy(env["finding"], findings / f"{i:03d}.json")
    state = directory / "state"
    proxy = Proxy(ctx.tools.proxy, ctx.emulator, ctx.delay_ms, directory / "proxy.jsonl")
    env = base_env(proxy.url)
    # The fleet cap (20 instances per 10 min by default) would stop a burst
    # of more: size it to the burst, as a responder running one on purpose does.
    common = ["--yes", "--output", "json", "--state-dir", str(state), "--evidence-bucket", EVIDENCE_BUCKET, "--fleet-cap-max", str(size)]
    log(f"burst of {size}: {'one process, --concurrency' if concurrent else 'one cordon run per finding, one after another'}")
    try:
        start = time.time()
        if concurrent:
            procs = [run_process([str(ctx.tools.cordon), "run", "--concurrency", str(min(size, BURST_CONCURRENCY)), str(findings)] + common, env, timeout=3600)]
        else:
            procs = [run_process([str(ctx.tools.cordon), "run", str(f)] + common, env, timeout=600) for f in sorted(findings.glob("*.json"))]
        wall = time.time() - start
        lines = proxy.lines_since(0)
    finally:
        proxy.stop()
    cases = journal_records(state)
    outcomes = [case_outcome(records) for records in cases.values()]
    effects = [ec2_effects(ctx.aws["ec2"], f["fixture"]) for f in fixtures]
    contained = sum(1 for e in effects if e["enis-isolated"] == e["enis"])
    mnia = sorted((l["start-unix"], l["end-unix"]) for l in lines if l["operation"] == MNIA and l["outcome"] == "forwarded")
    span = (mnia[-1][1] - mnia[0][0]) if len(mnia) > 1 else None
    budget = (MNIA_CAPACITY + MNIA_REFILL * span) if span else None
    reported = burst_report(procs[0]) if concurrent else {}
    mnia_bucket = reported.get("buckets", {}).get(f"ec2:{MNIA}", {})
    bottleneck_name, bottleneck_used = bottleneck(reported)
    return {
        "size": size,
        "run": run_id,
        "mode": "concurrent" if concurrent else "sequential",
        "processes": len(procs),
        "failed-processes": sum(1 for p in procs if p.rc != 0),
        "wall-s": wall,
        "calls": len(lines),
        "calls-per-finding": len(lines) / size,
        "by-operation": by_operation(lines),
        "throttled": sum(1 for l in lines if l["outcome"] == "throttled"),
        "cases": len(cases),
        "cases-completed": sum(1 for o in outcomes if o["status"] == "completed"),
        "isolate-verified": sum(1 for o in outcomes if o["isolate-verified"]),
        "contained": contained,
        "throttling-failures": sum(o["throttling-failures"] for o in outcomes),
        "mnia-calls": len(mnia),
        "mnia-span-s": span,
        "mnia-rate-per-s": (len(mnia) / span) if span else None,
        "mnia-budget-calls": budget,
        "mnia-budget-used": (len(mnia) / budget) if budget else None,
        "bottleneck-bucket": bottleneck_name,
        "bottleneck-budget-used": bottleneck_used,
        "peak-rss-mb": max(p.max_rss_kb for p in procs) / 1024,
        "exit-codes": sorted({p.rc for p in procs}),
        "cordon-outcomes": reported.get("outcomes"),
        "cordon-throttled": reported.get("throttled"),
        "limiter-waits": mnia_bucket.get("waits"),
        "limiter-waited-s": (mnia_bucket["waited-ms"] / 1000) if "waited-ms" in mnia_bucket else None,
    }


def bottleneck(reported: dict) -> tuple[str | None, float | None]:
    """The throttle bucket cordon drew on hardest, as a share of its budget
    over the burst: tokens taken / (capacity + refill/s x wall). A share near
    1 means that bucket (the limiter), not the engine or the emulator, set
    the pace."""
    wall = reported.get("wall-seconds")
    best: tuple[str | None, float | None] = (None, None)
    for name, bucket in (reported.get("buckets") or {}).items():
        budget = bucket.get("capacity", 0) + bucket.get("refill-per-second", 0) * (wall or 0)
        if not budget:
            continue
        used = bucket.get("tokens", 0) / budget
        if best[1] is None or used > best[1]:
            best = (name, used)
    return best


def burst_report(proc: Proc) -> dict:
    """cordon's own summary of a burst (`--output json`), empty if unreadable."""
    try:
        return json.loads(proc.stdout).get("summary", {})
    except (json.JSONDecodeError, AttributeError):
        return {}


def run_bursts(ctx: Context, sizes: list[int], runs: int) -> list[dict]:
    concurrent = supports_concurrency(ctx.tools)
    results = []
    for r in range(runs):
        for size in sizes:
            result = run_burst(ctx, size, str(r), concurrent)
            log(
                f"burst of {size}: {result['wall-s']:.1f} s, {result['calls']} calls, {result['throttled']} throttled, "
                f"{result['contained']}/{size} contained, peak RSS {result['peak-rss-mb']:.0f} MB"
            )
            results.append(result)
            ctx.checkpoint("burst-runs", results)
    return results


def burst_summary(results: list[dict]) -> list[dict]:
    rows = []
    for size in sorted({r["size"] for r in results}):
        runs = [r for r in results if r["size"] == size]
        row = {"size": size, "runs": len(runs), "mode": runs[0]["mode"]}
        for key in (
            "wall-s",
            "calls",
            "calls-per-finding",
            "throttled",
            "contained",
            "cases-completed",
            "throttling-failures",
            "failed-processes",
            "mnia-rate-per-s",
            "mnia-budget-used",
            "bottleneck-budget-used",
            "peak-rss-mb",
        ):
            row[key] = median([r.get(key) for r in runs])
        row["bottleneck-bucket"] = runs[0].get("bottleneck-bucket")
        rows.append(row)
    smallest = rows[0] if rows else None
    for row in rows:
        if smallest and smallest["wall-s"]:
            row["wall-growth"] = row["wall-s"] / smallest["wall-s"]
            row["size-growth"] = row["size"] / smallest["size"]
    return rows


# ---------------------------------------------------------------------------
# Part e: criterion


def run_criterion(tools: Tools, smoke: bool) -> list[dict]:
    argv = ["cargo", "bench", "--quiet", "-p", "cordon-core", "--bench", "pipeline"]
    if tools.profile != "release":
        argv += ["--profile", "dev"]
    argv += ["--", "--noplot"]
    if smoke:
        argv += ["--warm-up-time", "0.2", "--measurement-time", "0.5", "--sample-size", "10"]
    log("criterion: parse + route + plan per finding")
    proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise BenchError("cargo bench failed: " + "\n".join(proc.stderr.strip().splitlines()[-10:]))
    rows = []
    for estimates in sorted((tools.target_dir / "criterion" / "per-finding").glob("**/new/estimates.json")):
        meta = json.loads((estimates.parent / "benchmark.json").read_text())
        data = json.loads(estimates.read_text())
        rows.append(
            {
                "id": meta.get("full_id", str(estimates.parent.parent)),
                "median-us": data["median"]["point_estimate"] / 1000,
                "low-us": data["median"]["confidence_interval"]["lower_bound"] / 1000,
                "high-us": data["median"]["confidence_interval"]["upper_bound"] / 1000,
            }
        )
    if not rows:
        raise BenchError("criterion wrote no estimates under " + str(tools.target_dir / "criterion" / "per-finding"))
    return rows


# ---------------------------------------------------------------------------
# Output


def fmt(value, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def ratio(a: float | None, b: float | None) -> float | None:
    return (a / b) if a is not None and b else None


def comparisons(summaries: dict[str, dict]) -> list[dict]:
    def get(name: str, key: str):
        return summaries.get(name, {}).get(key)

    rows = []
    for label, cordon, other, key in [
        ("isolate + snapshot, wall", "cordon-isolate-snapshot", "boto3-ec2", "wall-s"),
        ("isolate + snapshot, wall", "cordon-isolate-snapshot", "c7n-ec2", "wall-s"),
        ("isolate + snapshot side by side, wall", "cordon-isolate-snapshot-parallel", "boto3-ec2", "wall-s"),
        ("isolate + snapshot side by side, wall", "cordon-isolate-snapshot-parallel", "c7n-ec2", "wall-s"),
        ("to isolated (last isolating call answered)", "cordon-isolate-snapshot", "boto3-ec2", "isolated-s"),
        ("to isolated (last isolating call answered)", "cordon-isolate-snapshot", "c7n-ec2", "isolated-s"),
        ("deactivate key, wall", "cordon-key", "boto3-key", "wall-s"),
        ("deactivate key, wall", "cordon-key", "c7n-key", "wall-s"),
    ]:
        r = ratio(get(cordon, key), get(other, key))
        if r is not None:
            target = TARGETS["ratio-vs-baseline"] if other.startswith("boto3") else TARGETS["ratio-vs-c7n"]
            rows.append(
                {
                    "what": label,
                    "cordon": cordon,
                    "other": other,
                    "cordon-s": get(cordon, key),
                    "other-s": get(other, key),
                    "ratio": r,
                    "target": target if label.startswith("isolate") else None,
                }
            )
    return rows


def effects_text(summary: dict) -> str:
    parts = []
    for key, count in summary["effects"].items():
        e = json.loads(key)
        if "enis" in e:
            text = f"ENIs isolated {e['enis-isolated']}/{e['enis']}, volumes snapshotted {e['volumes-snapshotted']}/{e['volumes']}"
        else:
            text = f"key {e['key-status']}"
        parts.append(text if len(summary["effects"]) == 1 else f"{text} (x{count})")
    return "; ".join(parts)


def comparison_table(summaries: list[dict], runs: int) -> list[str]:
    lines = [
        "| scenario | what | ok/runs | wall median (min-max) s | to isolated s | isolated + verified s | calls | peak RSS MB | effects | issue 11 figure |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        issue = ISSUE_FIGURES.get(s["scenario"], "")
        if s["scenario"] == "cordon-full":
            issue += "; " + ISSUE_FIGURES["cordon-full:verified"]
        lines.append(
            f"| {s['scenario']} | {s['what']} | {s['ok-runs']}/{s['runs']} | {fmt(s['wall-s'])} ({fmt(s['wall-min-s'])}-{fmt(s['wall-max-s'])}) "
            f"| {fmt(s['isolated-s'])} | {fmt(s['verified-s'])} | {fmt(s['calls'], digits=0)} | {fmt(s['peak-rss-mb'], digits=0)} | {effects_text(s)} | {issue} |"
        )
    return lines


def ratio_table(rows: list[dict]) -> list[str]:
    lines = ["| ratio | cordon | other | cordon s | other s | cordon/other | target |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        target = f"<= {r['target']}" if r["target"] else ""
        lines.append(
            f"| {r['what']} | {r['cordon']} | {r['other']} | {fmt(r['cordon-s'])} | {fmt(r['other-s'])} | {fmt(r['ratio'], digits=2)} | {target} |"
        )
    return lines


def burst_table(rows: list[dict]) -> list[str]:
    lines = [
        "| findings | mode | wall s | x wall vs smallest | calls | calls/finding | throttled (retried) | contained | completed | throttling failures | MNIA calls/s | MNIA budget used | bottleneck bucket: budget used | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['mode']} | {fmt(r['wall-s'], digits=1)} | {fmt(r.get('wall-growth'), digits=2)} (size x{fmt(r.get('size-growth'), digits=0)}) "
            f"| {fmt(r['calls'], digits=0)} | {fmt(r['calls-per-finding'], digits=1)} | {fmt(r['throttled'], digits=0)} | {fmt(r['contained'], digits=0)}/{r['size']} "
            f"| {fmt(r['cases-completed'], digits=0)} | {fmt(r['throttling-failures'], digits=0)} | {fmt(r['mnia-rate-per-s'], digits=2)} (budget {MNIA_REFILL:.0f}/s) "
            f"| {fmt(r['mnia-budget-used'] * 100 if r['mnia-budget-used'] is not None else None, '%', 1)} "
            f"| {r.get('bottleneck-bucket') or '-'}: {fmt(r['bottleneck-budget-used'] * 100 if r.get('bottleneck-budget-used') is not None else None, '%', 1)} "
            f"| {fmt(r['peak-rss-mb'], digits=0)} |"
        )
    return lines


def mermaid_chart(rows: list[dict], key: str, title: str, unit: str) -> list[str]:
    """A line chart of one burst figure against the burst size."""
    sizes = ", ".join(str(r["size"]) for r in rows)
    values = ", ".join(f"{r[key]:.1f}" for r in rows)
    top = max(r[key] for r in rows) * 1.1
    return [
        "```mermaid",
        "xychart-beta",
        f'    title "{title}"',
        f"    x-axis \"findings\" [{sizes}]",
        f'    y-axis "{unit}" 0 --> {max(top, 1):.0f}',
        f"    line [{values}]",
        "```",
    ]


def criterion_table(rows: list[dict]) -> list[str]:
    lines = ["| benchmark | median us (95% CI) | target |", "|---|---|---|"]
    for r in rows:
        target = f"<= {TARGETS['per-finding-us']:.0f} us" if "parse-route-plan" in r["id"] else ""
        lines.append(f"| {r['id']} | {r['median-us']:.1f} ({r['low-us']:.1f}-{r['high-us']:.1f}) | {target} |")
    return lines


def report(out: Path, meta: dict, summaries: list[dict], ratios: list[dict], bursts: list[dict], criterion: list[dict]) -> str:
    md = [
        "# cordon benchmark",
        "",
        f"- when: {meta['started']} ({meta['duration-s']:.0f} s); build profile: {meta['profile']}",
        f"- every tool through the latency proxy: {meta['delay-ms']} ms per request, EC2 throttling buckets on; emulator moto, reset before every run",
        f"- {meta['runs']} counted runs per scenario after {meta['warmup']} warm-up round(s), interleaved; medians",
        f"- machine: {meta['cpus']} CPUs; load average at start {meta['load-start']}, at end {meta['load-end']}",
        "",
    ]
    if meta["profile"] != "release":
        md += ["**Dev build: these figures check the harness; compare release builds only.**", ""]
    if summaries:
        md += ["## Side by side (parts a, b, c)", ""] + comparison_table(summaries, meta["runs"]) + [""]
        md += [
            "*to isolated*: from process start to the answer of the last call that moved an ENI (or the instance) into the isolation group, seen at the proxy. "
            "*isolated + verified*: to the isolate step's `step-verified` journal record (cordon only). *calls*: requests seen by the proxy.",
            "",
        ]
    if ratios:
        md += ["## Ratios", ""] + ratio_table(ratios) + [""]
    if bursts:
        md += ["## Bursts (part d)", ""] + burst_table(bursts) + [""]
        md += mermaid_chart(bursts, "wall-s", "Burst: wall time by number of findings", "seconds") + [""]
        md += mermaid_chart(bursts, "calls", "Burst: API calls by number of findings", "calls") + [""]
        md += mermaid_chart(bursts, "peak-rss-mb", "Burst: peak RSS by number of findings", "MB") + [""]
        md += [
            f"*MNIA budget used*: ModifyNetworkInterfaceAttribute calls / ({MNIA_CAPACITY:.0f} + {MNIA_REFILL:.0f}/s x the span from the first to the last such call). "
            "*bottleneck bucket*: the throttle bucket cordon drew on hardest, tokens taken / (capacity + refill/s x the burst's wall time), from cordon's own summary; near 100% the limiter set the pace. "
            "*throttled*: requests the proxy answered RequestLimitExceeded (each is retried by the client).",
            "",
        ]
    if criterion:
        md += ["## parse + route + plan per finding (part e, criterion)", ""] + criterion_table(criterion) + [""]
    text = "\n".join(md)
    (out / "results.md").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="counted runs per scenario (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (default 1)")
    parser.add_argument("--delay-ms", type=int, default=40, help="added per request by the proxy (default 40)")
    parser.add_argument("--only", default="a,b,c,d,e", help="parts or scenario names, comma-separated (default a,b,c,d,e)")
    parser.add_argument("--sizes", default="10,50,200", help="burst sizes (default 10,50,200)")
    parser.add_argument("--burst-runs", type=int, default=1, help="runs per burst size (default 1: a burst of 200 takes minutes)")
    parser.add_argument("--profile", choices=["release", "dev"], default=None, help="cargo profile (default release; dev with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="one run of part a (without the hang) and a tiny part e, in seconds; fails on any failed run")
    parser.add_argument("--keep-work", action="store_true", help="keep the work dir (proxy log, journals) for profiling")
    parser.add_argument("--out", type=Path, default=ROOT / "target" / "bench", help="where results.json and results.md go")
    args = parser.parse_args()

    if args.smoke:
        args.runs, args.warmup, args.only = 1, 0, "cordon-full,cordon-isolate-snapshot,cordon-isolate-snapshot-parallel,cordon-key,e"
    profile = args.profile or ("dev" if args.smoke else "release")
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    known = {"a", "b", "c", "d", "e"} | {s.name for s in SCENARIOS}
    if wanted - known:
        parser.error(f"--only: unknown {', '.join(sorted(wanted - known))} (parts a-e or: {', '.join(s.name for s in SCENARIOS)})")
    scenarios = [s for s in SCENARIOS if s.part in wanted or s.name in wanted]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    started = time.time()
    load_start = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    tools = build(profile)
    if any(s.tool == "c7n" for s in scenarios):
        tools.custodian = ensure_c7n(ROOT / "target" / "c7n-venv")

    results, summaries, bursts, burst_rows, criterion = [], [], [], [], []
    work = Path(tempfile.mkdtemp(prefix="cordon-bench."))
    emulator = None
    proxy = None
    try:
        if scenarios or "d" in wanted:
            emulator = Emulator(work)
            proxy = Proxy(tools.proxy, emulator, args.delay_ms, work / "proxy.jsonl")
            (args.out / "results.partial.json").unlink(missing_ok=True)
            ctx = Context(tools, emulator, proxy, args.delay_ms, work, clients(emulator.url), args.out)
            log(f"emulator {emulator.url}, proxy {proxy.url} (+{args.delay_ms} ms per request), work dir {work}")
            if scenarios:
                results, summaries = run_comparison(ctx, scenarios, args.runs, args.warmup)
            if "d" in wanted:
                bursts = run_bursts(ctx, sizes, args.burst_runs)
                burst_rows = burst_summary(bursts)
        if "e" in wanted:
            criterion = run_criterion(tools, args.smoke)
    finally:
        if proxy:
            proxy.stop()
        if emulator:
            emulator.stop()

    ratios = comparisons({s["scenario"]: s for s in summaries})
    meta = {
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "duration-s": time.time() - started,
        "profile": profile,
        "delay-ms": args.delay_ms,
        "runs": args.runs,
        "warmup": args.warmup,
        "cpus": os.cpu_count(),
        "load-start": " ".join(f"{x:.2f}" for x in load_start),
        "load-end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "c7n-version": C7N_VERSION if tools.custodian else None,
        "work-dir": str(work),
    }
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "format-version": 1,
                "meta": meta,
                "summaries": summaries,
                "ratios": ratios,
                "bursts": burst_rows,
                "burst-runs": bursts,
                "criterion": criterion,
                "runs": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(report(args.out, meta, summaries, ratios, burst_rows, criterion))
    print(f"\nresults: {args.out / 'results.json'} and {args.out / 'results.md'}")
    failed = [r for r in results if not r["ok"]] + [b for b in bursts if b["failed-processes"]]
    if failed:
        log(f"{len(failed)} run(s) failed; see results.json")
        return 1
    if args.keep_work:
        log(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"scripts/bench: {e}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        print(f"scripts/bench: {' '.join(map(str, e.cmd))} failed with exit code {e.returncode}", file=sys.stderr)
        sys.exit(1)
