"""The CLI's AWS edge: one boto3 session (profile, region, endpoint) and its clients.

Everything botocore raises while building clients or describing tasks is translated here into
the typed errors of ``chalicelib.errors``, so the commands above never see botocore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError, ProfileNotFound

from chalicelib.errors import ConfigError, TaskControlError

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

    def __post_init__(self) -> None:
        self._session: boto3.session.Session | None = None
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._create(service)
        return self._clients[service]

    def _create(self, service: str) -> Any:
        try:
            if self._session is None:
                self._session = boto3.session.Session(
                    profile_name=self.profile, region_name=self.region
                )
            return self._session.client(
                service, endpoint_url=self.endpoint_url, config=_CONFIG
            )
        except ProfileNotFound as exc:
            raise ConfigError("AWS_PROFILE", f"no such profile {self.profile!r}") from exc
        except NoRegionError as exc:
            raise ConfigError("AWS_REGION", "is not set; pass --region or set AWS_REGION") from exc
        except (BotoCoreError, ValueError) as exc:
            raise ConfigError("AWS", str(exc)) from exc

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
