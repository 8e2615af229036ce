"""The CLI's AWS edge: one boto3 session (profile, region, endpoint) and its clients.

Everything botocore raises while building clients or describing tasks is translated here into
the typed errors of ``chalicelib.errors``, so the commands above never see botocore.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError, ProfileNotFound

from chalicelib.errors import ConfigError, TaskControlError, WakefulError
from wakeful_cli.api import Signer

# ``https://abc123.execute-api.eu-west-1.amazonaws.com/api`` names its region.
_API_GATEWAY_HOST = re.compile(r"^https?://[^/]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


class AwsCallError(WakefulError):
    """An AWS call the CLI makes on its own (API key, logs) failed."""

    def __init__(self, operation: str, reason: str, retryable: bool = False) -> None:
        super().__init__(f"{operation} failed: {reason}")
        self.operation = operation
        self.reason = reason
        self.retryable = retryable

# An operator waits at the terminal: fail fast rather than retry for minutes.
_CONFIG = Config(
    connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
)


@dataclass
class AwsSession:
    """Clients for one profile/region/endpoint, created on first use."""

    profile: str | None
    region: str | None
    endpoint_url: str | None
    # (access key, secret, session token) given by a profile file; else boto3's own chain.
    keys: tuple[str, str, str | None] | None = None

    def __post_init__(self) -> None:
        self._session: boto3.session.Session | None = None
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._create(service)
        return self._clients[service]

    def _create(self, service: str) -> Any:
        try:
            return self._boto().client(
                service, endpoint_url=self.endpoint_url, config=_CONFIG
            )
        except ProfileNotFound as exc:
            raise ConfigError("AWS_PROFILE", f"no such profile {self.profile!r}") from exc
        except NoRegionError as exc:
            raise ConfigError("AWS_REGION", "is not set; pass --region or set AWS_REGION") from exc
        except (BotoCoreError, ValueError) as exc:
            raise ConfigError("AWS", str(exc)) from exc

    def _boto(self) -> boto3.session.Session:
        if self._session is None:
            access, secret, token = self.keys or (None, None, None)
            self._session = boto3.session.Session(
                profile_name=self.profile, region_name=self.region,
                aws_access_key_id=access, aws_secret_access_key=secret,
                aws_session_token=token,
            )
        return self._session

    def signer(self, service: str, url: str) -> Signer:
        """SigV4 for ``service`` (``execute-api`` for an IAM-protected API), with this
        session's credentials, in the region the URL names (else the session's)."""
        match = _API_GATEWAY_HOST.match(url)
        try:
            session = self._boto()
            region = match.group(1) if match else session.region_name
            credentials = session.get_credentials()
        except ProfileNotFound as exc:
            raise ConfigError("AWS_PROFILE", f"no such profile {self.profile!r}") from exc
        except BotoCoreError as exc:
            raise ConfigError("AWS", str(exc)) from exc
        if not region:
            raise ConfigError("AWS_REGION", "is not set; pass --region or set AWS_REGION "
                                            "(it is part of the signature)")
        if credentials is None:
            raise ConfigError("AWS", "no AWS credentials to sign with (--auth iam): set "
                                     "AWS_PROFILE / --profile or the AWS_ACCESS_KEY_ID pair")

        def sign(method: str, target: str, headers: Mapping[str, str],
                 body: bytes | None) -> dict[str, str]:
            request = AWSRequest(method=method, url=target, data=body or b"",
                                 headers=dict(headers))
            # Frozen per request: refreshable credentials may have rotated meanwhile.
            SigV4Auth(credentials.get_frozen_credentials(), service, region).add_auth(request)
            return dict(request.headers.items())

        return sign

    def api_key_value(self, key_id: str) -> str:
        """The value of the API Gateway key ``key_id`` (the profile names it, IAM reads it)."""
        try:
            found = self.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise AwsCallError(f"reading API key {key_id}",
                               f"{error.get('Code', '?')}: {error.get('Message', '')}") from exc
        except BotoCoreError as exc:
            raise AwsCallError(f"reading API key {key_id}", str(exc), retryable=True) from exc
        value = found.get("value")
        if not value:
            raise AwsCallError(f"reading API key {key_id}", "the key has no value")
        return str(value)

    def task_status(self, cluster: str, task_arn: str) -> str | None:
        """ECS's ``lastStatus`` of a task, or ``None`` when ECS does not know it."""
        try:
            response = self.client("ecs").describe_tasks(cluster=cluster, tasks=[task_arn])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise TaskControlError(
                "DescribeTasks", f"{error.get('Code', '?')}: {error.get('Message', '')}"
            ) from exc
        except BotoCoreError as exc:
            raise TaskControlError("DescribeTasks", str(exc), retryable=True) from exc
        for task in response.get("tasks") or []:
            if task.get("taskArn") == task_arn:
                return str(task.get("lastStatus") or "UNKNOWN")
        return None


def cluster_of(task_arn: str, configured: str | None) -> str | None:
    """The configured cluster, else the one a long-format task ARN names (``task/CLUSTER/ID``)."""
    if configured:
        return configured
    parts = task_arn.split(":task/", 1)[-1].split("/")
    return parts[0] if len(parts) == 2 else None
