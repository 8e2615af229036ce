"""Where the CLI points: flags first, then the environment the deployed parts read.

Nothing is read until a command needs it, so ``wakeful wake`` works with only an API URL and
``wakeful backups`` with only a bucket; a missing value is a ``ConfigError`` naming the variable
and the flag.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from functools import cached_property

from chalicelib.errors import ConfigError
from chalicelib.lease import LeaseTable
from chalicelib.settings import DatabaseLocation
from chalicelib.store import DatabaseStore
from wakeful_cli.api import ControlPlaneApi
from wakeful_cli.session import AwsSession

# Flag → the variable it stands for (what ``DatabaseLocation.from_env`` reads).
LOCATION_FLAGS = {
    "bucket": "DB_S3_BUCKET",
    "key": "DB_S3_KEY",
    "table": "WAKEFUL_LEASE_TABLE",
    "lease_name": "WAKEFUL_LEASE_NAME",
}

_FLAG_OF = {
    "DB_S3_BUCKET": "--bucket",
    "DB_S3_KEY": "--key",
    "WAKEFUL_LEASE_TABLE": "--table",
    "WAKEFUL_LEASE_NAME": "--lease-name",
}


def _value(flag: str | None, env: Mapping[str, str], *names: str) -> str | None:
    if flag is not None and flag.strip():
        return flag.strip()
    for name in names:
        raw = env.get(name)
        if raw is not None and raw.strip():
            return raw.strip()
    return None


class Target:
    """The database, lease, AWS session, API and cluster one invocation works on."""

    def __init__(self, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> None:
        self.args = args
        self.env = dict(os.environ if env is None else env)

    @cached_property
    def location(self) -> DatabaseLocation:
        env = dict(self.env)
        for flag, variable in LOCATION_FLAGS.items():
            value = getattr(self.args, flag, None)
            if value:
                env[variable] = value
        try:
            return DatabaseLocation.from_env(env)
        except ConfigError as exc:
            flag = _FLAG_OF.get(exc.variable)
            if flag:
                raise ConfigError(exc.variable, f"{exc.problem} (set it or pass {flag})") from None
            raise

    @cached_property
    def session(self) -> AwsSession:
        return AwsSession(
            profile=_value(self.args.profile, self.env, "AWS_PROFILE"),
            region=_value(self.args.region, self.env, "AWS_REGION", "AWS_DEFAULT_REGION"),
            endpoint_url=_value(self.args.endpoint_url, self.env, "AWS_ENDPOINT_URL"),
        )

    @cached_property
    def table(self) -> LeaseTable:
        location = self.location
        return LeaseTable(location.lease_table, location.lease_name,
                          client=self.session.client("dynamodb"))

    @cached_property
    def store(self) -> DatabaseStore:
        location = self.location
        return DatabaseStore(location.bucket, location.key, client=self.session.client("s3"),
                             backup_retention=location.backup_retention)

    @property
    def api_url(self) -> str | None:
        return _value(self.args.api_url, self.env, "WAKEFUL_API_URL")

    def api(self, command: str) -> ControlPlaneApi:
        url = self.api_url
        if not url:
            raise ConfigError(
                "WAKEFUL_API_URL", f"is required for {command} (set it or pass --api-url)"
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError("WAKEFUL_API_URL", f"must be an http(s) URL, got {url!r}")
        return ControlPlaneApi(url, _value(self.args.api_key, self.env, "WAKEFUL_API_KEY"))

    @property
    def cluster(self) -> str | None:
        return _value(self.args.cluster, self.env, "WAKEFUL_CLUSTER")
