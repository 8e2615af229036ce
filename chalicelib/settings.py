"""Settings read once from the environment into frozen objects.

Every variable is parsed here and nowhere else; a missing or invalid value raises
``ConfigError`` whose message is one line naming the variable.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib import launchers
from chalicelib.errors import ConfigError

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_MiB = 1024 * 1024
DAY = 86400.0
RETENTION = 7 * DAY


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _required(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name)
    if value is None:
        raise ConfigError(name, "is required but not set")
    return value


def _number(
    env: Mapping[str, str], name: str, default: float, minimum: float = 0.0
) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(name, f"must be a finite number >= {minimum:g}, got {raw!r}")
    return value


def seconds(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    """A finite number of seconds from ``env`` (``default`` when unset): the one rule every
    part's settings read durations by, so the front door's read like the agent's."""
    return _number(env, name, default, minimum)


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {raw!r}")
    return value


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on", "enabled"):
        return True
    if lowered in ("0", "false", "no", "off", "disabled"):
        return False
    raise ConfigError(name, f"must be true or false, got {raw!r}")


def _csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = _get(env, name)
    if raw is None:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bucket(env: Mapping[str, str]) -> str:
    bucket = _required(env, "DB_S3_BUCKET")
    if not _BUCKET_RE.match(bucket):
        raise ConfigError("DB_S3_BUCKET", f"is not a valid S3 bucket name: {bucket!r}")
    return bucket


def _key(env: Mapping[str, str]) -> str:
    key = _get(env, "DB_S3_KEY", "db.sqlite3") or "db.sqlite3"
    if key.startswith("/") or key.endswith("/"):
        raise ConfigError("DB_S3_KEY", f"must be an object key, not a folder: {key!r}")
    return key


def default_lease_name(bucket: str, key: str) -> str:
    """The lease that guards ``s3://bucket/key`` when none is named."""
    return f"{bucket}/{key}"


@dataclass(frozen=True)
class DatabaseLocation:
    """Where the database lives in S3 and which lease guards it.

    ``AWS_ENDPOINT_URL`` (and the per-service ``AWS_ENDPOINT_URL_S3`` ...) is boto3's to read:
    passing it on would override the per-service ones.
    """

    bucket: str
    key: str
    lease_table: str
    lease_name: str
    region: str | None
    backup_retention: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DatabaseLocation:
        env = os.environ if env is None else env
        bucket = _bucket(env)
        key = _key(env)
        return cls(
            bucket=bucket,
            key=key,
            lease_table=_required(env, "WAKEFUL_LEASE_TABLE"),
            lease_name=_get(env, "WAKEFUL_LEASE_NAME") or default_lease_name(bucket, key),
            region=_get(env, "AWS_REGION") or _get(env, "AWS_DEFAULT_REGION"),
            backup_retention=_integer(env, "WAKEFUL_BACKUP_RETENTION", 30, minimum=1),
        )


@dataclass(frozen=True)
class AgentSettings:
    """Everything the sync agent needs, validated."""

    location: DatabaseLocation
    local_path: str
    sync_interval: float
    lease_ttl: float
    idle_timeout: float
    reservation_id: str | None
    acquire_timeout: float
    stop_grace: float
    stop_budget: float
    app_port: int | None
    multipart_threshold: int = 128 * _MiB
    # What readiness asks of the app: an HTTP path that must answer below 500 (else a TCP
    # connect), on this host (the app's own loopback in its container).
    ready_path: str | None = None
    ready_host: str = "127.0.0.1"
    # How the agent replicates (WAKEFUL_REPLICATION): ``snapshot`` uploads the whole file by
    # compare-and-swap; ``chain`` ships changed pages as fenced segments (docs/replication.md).
    replication: str = "chain"
    # The point-in-time restore window of the chain (WAKEFUL_RETENTION, seconds like every
    # other duration here): every committed state this recent restores, older ones may go.
    retention: float = RETENTION

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        env = os.environ if env is None else env
        location = DatabaseLocation.from_env(env)
        local_path = _get(env, "DB_LOCAL_PATH", "/app/db.sqlite3") or "/app/db.sqlite3"
        if local_path.endswith("/"):
            raise ConfigError("DB_LOCAL_PATH", f"must be a file path, got {local_path!r}")
        lease_ttl = _number(env, "WAKEFUL_LEASE_TTL", 30.0, minimum=1.0)
        replication = _choice(env, "WAKEFUL_REPLICATION", ("chain", "snapshot"))
        # A segment carries only what changed, so the chain can afford a sync every second; a
        # whole-file snapshot every second costs the database's size each time.
        sync_interval = _number(
            env, "WAKEFUL_SYNC_INTERVAL", CHAIN_SYNC_INTERVAL if replication == "chain" else 60.0
        )
        port_raw = _get(env, "WAKEFUL_APP_PORT")
        return cls(
            location=location,
            local_path=os.path.abspath(local_path),
            sync_interval=sync_interval,
            lease_ttl=lease_ttl,
            idle_timeout=_number(env, "WAKEFUL_IDLE_TIMEOUT", 0.0),
            reservation_id=_get(env, "WAKEFUL_RESERVATION_ID"),
            acquire_timeout=_number(env, "WAKEFUL_ACQUIRE_TIMEOUT", 2 * lease_ttl),
            stop_grace=_number(env, "WAKEFUL_STOP_GRACE", 10.0),
            stop_budget=_number(env, "WAKEFUL_STOP_BUDGET", 100.0, minimum=1.0),
            app_port=_integer(env, "WAKEFUL_APP_PORT", 0, minimum=1) if port_raw else None,
            # S3's smallest part is 5 MiB.
            multipart_threshold=_integer(
                env, "WAKEFUL_MULTIPART_THRESHOLD", 128 * _MiB, minimum=5 * _MiB
            ),
            ready_path=_ready_path(env),
            ready_host=_get(env, "WAKEFUL_READY_HOST", "127.0.0.1") or "127.0.0.1",
            replication=replication,
            retention=_number(env, "WAKEFUL_RETENTION", RETENTION, minimum=1.0),
        )

    @property
    def retention_days(self) -> float:
        return self.retention / DAY


CHAIN_SYNC_INTERVAL = 1.0


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (the first is the default)."""
    value = (_get(env, name, choices[0]) or choices[0]).lower()
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _ready_path(env: Mapping[str, str]) -> str | None:
    path = _get(env, "WAKEFUL_READY_PATH")
    if path and not path.startswith("/"):
        raise ConfigError("WAKEFUL_READY_PATH", f"must start with /, got {path!r}")
    return path or None


@dataclass(frozen=True)
class ControlPlaneSettings:
    """Everything the control plane Lambdas need, validated."""

    location: DatabaseLocation
    cluster: str
    task_definition: str
    container_name: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool
    app_port: int
    start_timeout: float
    lease_ttl: float
    task_tags: tuple[tuple[str, str], ...]
    launcher: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ControlPlaneSettings:
        env = os.environ if env is None else env
        launcher = (_get(env, launchers.VARIABLE, launchers.BUILT_IN) or launchers.BUILT_IN).lower()
        if launcher != launchers.BUILT_IN and launcher not in launchers.names():
            raise launchers.unknown(launcher)
        return cls(
            location=DatabaseLocation.from_env(env),
            cluster=_required(env, "WAKEFUL_CLUSTER"),
            task_definition=_required(env, "WAKEFUL_TASK_DEFINITION"),
            container_name=_get(env, "WAKEFUL_CONTAINER_NAME", "app") or "app",
            subnets=_csv(env, "WAKEFUL_SUBNETS"),
            security_groups=_csv(env, "WAKEFUL_SECURITY_GROUPS"),
            assign_public_ip=_boolean(env, "WAKEFUL_ASSIGN_PUBLIC_IP", False),
            app_port=_integer(env, "WAKEFUL_APP_PORT", 8000, minimum=1),
            start_timeout=_number(env, "WAKEFUL_START_TIMEOUT", 300.0, minimum=1.0),
            lease_ttl=_number(env, "WAKEFUL_LEASE_TTL", 30.0, minimum=1.0),
            task_tags=_tags(env, "WAKEFUL_TASK_TAGS"),
            launcher=launcher,
        )


def _tags(env: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in _csv(env, name):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(name, f"must be key=value pairs separated by commas, got {item!r}")
        pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


# -- how the HTTP routes are protected -------------------------------------------------------

API_KEY = "api_key"
IAM = "iam"
AUTH_MODES = (API_KEY, IAM)
API_KEY_DIGEST = "WAKEFUL_API_KEY_SHA256"
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class AuthSettings:
    """``WAKEFUL_AUTH``, ``WAKEFUL_API_KEY_SHA256`` and ``WAKEFUL_CORS_ORIGIN`` as configured.

    Read when ``app.py`` is imported (Chalice writes the auth choice into the API definition),
    so reading never raises: an unknown mode still protects the routes with an API key, and
    ``check`` and ``key_digests`` name the bad variable when a request needs them.
    """

    requested_mode: str
    key_digests_raw: str
    cors_origin: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthSettings:
        env = os.environ if env is None else env
        return cls(
            requested_mode=(env.get("WAKEFUL_AUTH") or API_KEY).strip().lower(),
            key_digests_raw=(env.get(API_KEY_DIGEST) or "").strip().lower(),
            cors_origin=(env.get("WAKEFUL_CORS_ORIGIN") or "").strip() or None,
        )

    @property
    def mode(self) -> str:
        """The mode the routes are protected with: an unknown one is never "open"."""
        return self.requested_mode if self.requested_mode in AUTH_MODES else API_KEY

    def check(self) -> None:
        """``ConfigError`` naming the variable when the mode or the CORS origin is invalid.

        The key's digests are not checked here (``key_digests`` is, on each request): the
        event handler and the reconciler need no API key and must keep working without one.
        """
        if self.requested_mode not in AUTH_MODES:
            raise ConfigError(
                "WAKEFUL_AUTH",
                f"must be one of {', '.join(AUTH_MODES)}, got {self.requested_mode!r}",
            )
        origin = self.cors_origin
        if origin and origin != "*" and not origin.startswith(("https://", "http://")):
            raise ConfigError(
                "WAKEFUL_CORS_ORIGIN",
                f"must be an origin like https://app.example.com, got {origin!r}",
            )

    def key_digests(self) -> tuple[bytes, ...]:
        """The SHA-256 digests of the accepted API keys; ``ConfigError`` when none is valid."""
        digests = [part.strip() for part in self.key_digests_raw.split(",") if part.strip()]
        if not digests:
            raise ConfigError(
                API_KEY_DIGEST,
                "must be set in api_key mode: the hex SHA-256 of the API key "
                "(printf %s \"$KEY\" | sha256sum)",
            )
        bad = [d for d in digests if not _DIGEST_RE.fullmatch(d)]
        if bad:
            raise ConfigError(API_KEY_DIGEST, f"not a hex SHA-256 digest: {bad[0][:16]!r}...")
        return tuple(bytes.fromhex(d) for d in digests)


# -- logs, metrics, traces -----------------------------------------------------------------

METRICS_NAMESPACE = "wakeful"
_ON = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ObservabilitySettings:
    """The log level, the metrics namespace (set per stage) and whether to trace with X-Ray."""

    log_level: str
    metrics_namespace: str
    tracing: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ObservabilitySettings:
        env = os.environ if env is None else env
        return cls(
            log_level=env.get("WAKEFUL_LOG_LEVEL", "INFO"),
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE") or METRICS_NAMESPACE,
            # Tracing costs ~200 ms of cold start: only an explicit yes turns it on.
            tracing=(env.get("WAKEFUL_TRACING") or "").strip().lower() in _ON,
        )
