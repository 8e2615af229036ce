"""Profiles: the settings of one deployment in a file, instead of a shell full of exports.

``wakeful.toml`` in the working folder, else ``$XDG_CONFIG_HOME/wakeful/config.toml``
(``~/.config/wakeful/config.toml``), else the file ``--config`` / ``WAKEFUL_CONFIG`` names. Each
``[profile.NAME]`` table holds one deployment; ``--profile-name`` / ``WAKEFUL_PROFILE`` picks one,
else the one named ``default``, else the only one there is. ``terraform output -raw
wakeful_profile`` of ``infra/`` writes such a table, and so does ``make up`` for the local stack.

A profile only fills what neither a flag nor the environment sets: flags > environment > file.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from chalicelib.errors import ConfigError

# Profile key -> the variable it stands for, then other variables that mean the same (when
# any of them is set in the environment, the profile's value is not used).
KEYS: dict[str, tuple[str, ...]] = {
    "bucket": ("DB_S3_BUCKET",),
    "key": ("DB_S3_KEY",),
    "lease_table": ("WAKEFUL_LEASE_TABLE",),
    "lease_name": ("WAKEFUL_LEASE_NAME",),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_profile": ("AWS_PROFILE",),
    "endpoint_url": ("AWS_ENDPOINT_URL",),
    # For a local stand-in only: real credentials belong in the AWS config, not here.
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "api_url": ("WAKEFUL_API_URL",),
    "api_key": ("WAKEFUL_API_KEY",),
    "api_key_id": ("WAKEFUL_API_KEY_ID",),
    "auth": ("WAKEFUL_AUTH",),
    "cluster": ("WAKEFUL_CLUSTER",),
    "agent_log_group": ("WAKEFUL_AGENT_LOG_GROUP",),
    "control_plane_log_groups": ("WAKEFUL_CONTROL_PLANE_LOG_GROUPS",),
}

# Keys whose value is a list (joined with commas into their variable).
LIST_KEYS = frozenset({"control_plane_log_groups"})

FILE_NAME = "wakeful.toml"

# A TOML key that needs no quotes.
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Profile:
    """One ``[profile.NAME]`` table of one file, as variables."""

    name: str
    path: Path
    variables: dict[str, str]

    def beneath(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with this profile's values filled in where ``env`` sets none."""
        merged = dict(env)
        for names in KEYS.values():
            value = self.variables.get(names[0])
            if value is not None and not any((env.get(name) or "").strip() for name in names):
                merged[names[0]] = value
        return merged


def find_file(env: Mapping[str, str], cwd: str, explicit: str | None = None) -> Path | None:
    """The profile file this invocation reads, or ``None`` when there is none."""
    named = explicit or (env.get("WAKEFUL_CONFIG") or "").strip() or None
    if named:
        path = Path(cwd, os.path.expanduser(named))
        if not path.is_file():
            raise ConfigError("WAKEFUL_CONFIG", f"no profile file at {path}")
        return path
    config_home = (env.get("XDG_CONFIG_HOME") or "").strip() or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config"
    )
    for path in (Path(cwd, FILE_NAME), Path(config_home, "wakeful", "config.toml")):
        if path.is_file():
            return path
    return None


def load(path: Path, wanted: str | None) -> Profile | None:
    """The chosen profile of ``path``; ``None`` when the file has none and none was asked for."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("WAKEFUL_CONFIG", f"cannot read {path}: {exc}") from exc
    profiles = document.get("profile", {})
    if not isinstance(profiles, dict) or any(not isinstance(v, dict) for v in profiles.values()):
        raise ConfigError("WAKEFUL_CONFIG", f"{path}: profiles are tables: [profile.NAME]")
    name = choose(profiles, wanted, path)
    if name is None:
        return None
    return Profile(name, path, variables(profiles[name], f"{path} [profile.{name}]"))


def choose(profiles: Mapping[str, object], wanted: str | None, path: Path) -> str | None:
    if wanted:
        if wanted not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError("WAKEFUL_PROFILE",
                              f"no profile {wanted!r} in {path} (it has: {known})")
        return wanted
    if "default" in profiles:
        return "default"
    if len(profiles) == 1:
        return next(iter(profiles))
    if not profiles:
        return None
    raise ConfigError(
        "WAKEFUL_PROFILE",
        f"{path} has profiles {', '.join(sorted(profiles))}: choose one with --profile-name "
        "or WAKEFUL_PROFILE",
    )


def variables(table: Mapping[str, object], where: str) -> dict[str, str]:
    """A profile table as the variables its keys stand for; unknown keys and odd values are
    errors (a typo must not silently point the CLI somewhere else)."""
    found: dict[str, str] = {}
    for key, value in table.items():
        if key not in KEYS:
            raise ConfigError("WAKEFUL_CONFIG", f"{where}: unknown key {key!r} "
                                                f"(known: {', '.join(sorted(KEYS))})")
        if key in LIST_KEYS and isinstance(value, list) and all(isinstance(v, str) for v in value):
            found[KEYS[key][0]] = ",".join(value)
        elif isinstance(value, str):
            found[KEYS[key][0]] = value
        else:
            kind = "a list of strings" if key in LIST_KEYS else "a string"
            raise ConfigError("WAKEFUL_CONFIG", f"{where}: {key} must be {kind}")
    return found


def render(name: str, values: Mapping[str, str | Sequence[str] | None]) -> str:
    """A ``[profile.NAME]`` table for ``values`` (profile keys; ``None`` values left out).

    TOML basic strings and arrays of them are JSON's, so ``json.dumps`` quotes them.
    """
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown profile keys: {', '.join(unknown)}")
    lines = [f"[profile.{name if BARE_KEY.fullmatch(name) else json.dumps(name)}]"]
    for key, value in values.items():
        if value is None:
            continue
        shown = json.dumps(value if isinstance(value, str) else list(value))
        lines.append(f"{key} = {shown}")
    return "\n".join(lines) + "\n"
