"""moto as the AWS API for tests: in-process (ThreadedMotoServer) or, when IAM permissions must be
enforced, as its own `moto_server` process (moto's enforcement switch is process-wide)."""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from . import processes

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


def ecr_password(endpoint_url: str, registry_id: str = ACCOUNT) -> str:
    """The password moto's GetAuthorizationToken hands out (the registry stand-in must accept it)."""
    ecr = boto3.client("ecr", endpoint_url=endpoint_url, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="setup")
    token = ecr.get_authorization_token(registryIds=[registry_id])["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    assert user == "AWS"
    return password


def start_threaded() -> tuple[ThreadedMotoServer, str]:
    port = processes.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


@dataclass
class EnforcingMoto:
    """A `moto_server` process that checks IAM policies (after the setup calls)."""

    process: processes.Process
    url: str

    def stop(self) -> None:
        self.process.stop()


def start_enforcing(workdir: Path) -> EnforcingMoto:
    binary = Path(sys.executable).parent / "moto_server"
    port = processes.free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    process = processes.start([str(binary), "-H", "127.0.0.1", "-p", str(port)], workdir / "moto.log")
    url = f"http://127.0.0.1:{port}"
    processes.wait_for_http(f"{url}/moto-api/", accept=(200,))
    return EnforcingMoto(process, url)


def create_user_with_policy(endpoint_url: str, user: str, actions: list[str]) -> tuple[str, str]:
    """An IAM user allowed only `actions`; returns its access key id and secret."""
    iam = boto3.client("iam", endpoint_url=endpoint_url, region_name=REGION, aws_access_key_id="admin", aws_secret_access_key="admin")
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    iam.put_user_policy(UserName=user, PolicyName=f"{user}-policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def enforce_iam(endpoint_url: str) -> None:
    """From now on, every call is checked against IAM policies (moto's reset-auth switch)."""
    # Not form-encoded: moto reads the raw body.
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
