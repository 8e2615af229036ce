"""Where the CLI points: flags first, then the environment the deployed parts read, then the
chosen profile of a profile file (``wakeful_cli.profile``).

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
from chalicelib.ledger import TaskLedger
from chalicelib.settings import DatabaseLocation
from chalicelib.store import DatabaseStore
from wakeful_cli import profile as profiles
from wakeful_cli.api import ControlPlaneApi
from wakeful_cli.session import AwsSession
from wakeful_replica.store import ChainStore

# Flag (its argparse dest) -> the variable it stands for.
FLAG_VARIABLES = {
    "bucket": "DB_S3_BUCKET",
    "key": "DB_S3_KEY",
    "table": "WAKEFUL_LEASE_TABLE",
    "lease_name": "WAKEFUL_LEASE_NAME",
    "profile": "AWS_PROFILE",
    "region": "AWS_REGION",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "api_url": "WAKEFUL_API_URL",
    "api_key": "WAKEFUL_API_KEY",
    "auth": "WAKEFUL_AUTH",
    "cluster": "WAKEFUL_CLUSTER",
    "agent_log_group": "WAKEFUL_AGENT_LOG_GROUP",
}

_FLAG_OF = {variable: "--" + dest.replace("_", "-") for dest, variable in FLAG_VARIABLES.items()}

AUTH_MODES = ("api_key", "iam")


def _value(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        raw = env.get(name)
        if raw is not None and raw.strip():
            return raw.strip()
    return None


def layered(
    args: argparse.Namespace, env: Mapping[str, str], cwd: str
) -> tuple[dict[str, str], profiles.Profile | None]:
    """One mapping of variables: the flags given, over the environment, over the profile."""
    path = profiles.find_file(env, cwd, getattr(args, "config", None))
    wanted = getattr(args, "profile_name", None) or _value(env, "WAKEFUL_PROFILE")
    chosen = profiles.load(path, wanted) if path is not None else None
    if chosen is None and wanted:
        where = f"in {path}" if path else f"(no {profiles.FILE_NAME} here, no WAKEFUL_CONFIG)"
        raise ConfigError("WAKEFUL_PROFILE", f"no profile {wanted!r} {where}")
    merged = chosen.beneath(env) if chosen else dict(env)
    for dest, variable in FLAG_VARIABLES.items():
        value = getattr(args, dest, None)
        if value is not None and str(value).strip():
            merged[variable] = str(value).strip()
    groups = getattr(args, "control_plane_log_group", None)
    if groups:
        merged["WAKEFUL_CONTROL_PLANE_LOG_GROUPS"] = ",".join(groups)
    return merged, chosen


class Target:
    """The database, lease, AWS session, API and cluster one invocation works on."""

    def __init__(
        self, args: argparse.Namespace, env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.args = args
        self.env, self.profile = layered(args, os.environ if env is None else env,
                                         cwd or os.getcwd())

    @cached_property
    def location(self) -> DatabaseLocation:
        try:
            return DatabaseLocation.from_env(self.env)
        except ConfigError as exc:
            flag = _FLAG_OF.get(exc.variable)
            if flag:
                raise ConfigError(exc.variable, f"{exc.problem} (set it or pass {flag})") from None
            raise

    @cached_property
    def session(self) -> AwsSession:
        aws_profile = _value(self.env, "AWS_PROFILE")
        keys = None
        if aws_profile is None:
            # Keys from a profile file (a local stand-in's); an AWS profile brings its own.
            access, secret = (_value(self.env, "AWS_ACCESS_KEY_ID"),
                              _value(self.env, "AWS_SECRET_ACCESS_KEY"))
            if access and secret:
                keys = (access, secret, _value(self.env, "AWS_SESSION_TOKEN"))
        return AwsSession(
            profile=aws_profile,
            region=_value(self.env, "AWS_REGION", "AWS_DEFAULT_REGION"),
            endpoint_url=_value(self.env, "AWS_ENDPOINT_URL"),
            keys=keys,
        )

    @cached_property
    def table(self) -> LeaseTable:
        location = self.location
        return LeaseTable(location.lease_table, location.lease_name,
                          client=self.session.client("dynamodb"))

    @cached_property
    def ledger(self) -> TaskLedger:
        location = self.location
        return TaskLedger(location.lease_table, location.lease_name,
                          client=self.session.client("dynamodb"))

    @cached_property
    def store(self) -> DatabaseStore:
        location = self.location
        return DatabaseStore(location.bucket, location.key, client=self.session.client("s3"),
                             backup_retention=location.backup_retention)

    @cached_property
    def chain(self) -> ChainStore:
        """The chain beside the database (docs/replication.md); a bucket holds one once its
        manifest is there."""
        location = self.location
        return ChainStore(location.bucket, location.key, client=self.session.client("s3"))

    @property
    def api_url(self) -> str | None:
        return _value(self.env, "WAKEFUL_API_URL")

    @property
    def auth(self) -> str:
        mode = (_value(self.env, "WAKEFUL_AUTH") or "api_key").lower()
        if mode not in AUTH_MODES:
            raise ConfigError("WAKEFUL_AUTH", f"must be one of {', '.join(AUTH_MODES)}, "
                                              f"got {mode!r}")
        return mode

    def api(self, command: str) -> ControlPlaneApi:
        url = self.api_url
        if not url:
            raise ConfigError(
                "WAKEFUL_API_URL", f"is required for {command} (set it or pass --api-url)"
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError("WAKEFUL_API_URL", f"must be an http(s) URL, got {url!r}")
        if self.auth == "iam":
            return ControlPlaneApi(url, None, sign=self.session.signer("execute-api", url))
        return ControlPlaneApi(url, self._api_key())

    def _api_key(self) -> str | None:
        key = _value(self.env, "WAKEFUL_API_KEY")
        if key:
            return key
        key_id = _value(self.env, "WAKEFUL_API_KEY_ID")
        # The profile names the key; its value is read with the operator's AWS credentials,
        # so no secret has to be written into a file.
        return self.session.api_key_value(key_id) if key_id else None

    @property
    def cluster(self) -> str | None:
        return _value(self.env, "WAKEFUL_CLUSTER")

    @property
    def agent_log_group(self) -> str | None:
        return _value(self.env, "WAKEFUL_AGENT_LOG_GROUP")

    @property
    def control_plane_log_groups(self) -> list[str]:
        raw = _value(self.env, "WAKEFUL_CONTROL_PLANE_LOG_GROUPS") or ""
        return [group.strip() for group in raw.split(",") if group.strip()]
