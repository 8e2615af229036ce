"""Which task launchers exist: ``ecs``, built in, and those installed under an entry point.

The control plane starts tasks through a ``tasks.TaskLauncher``. ECS's is its own; any other is
registered from outside as an entry point of the group ``wakeful.task_launchers`` (the local
stack's stand-in for Fargate is one, declared in pyproject.toml), so the kernel never names a
backend, and an installation without one (the Lambda zip carries no package metadata) simply
does not offer it. Settings check a name against ``names()``; ``tasks.launcher_for`` builds the
launcher, with ``load()`` for any but ``ecs``. Nothing is looked up while ``ecs`` is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chalicelib.errors import ConfigError

GROUP = "wakeful.task_launchers"
BUILT_IN = "ecs"
VARIABLE = "WAKEFUL_TASK_LAUNCHER"


def names() -> tuple[str, ...]:
    """Every launcher this installation offers: ``ecs`` first, then the registered ones."""
    return (BUILT_IN, *sorted({entry.name for entry in _registered()} - {BUILT_IN}))


def choices(offered: Sequence[str]) -> str:
    """``ecs``, ``ecs or local``, ``one of ecs, a or b``: the names, as a sentence says them."""
    if len(offered) == 1:
        return offered[0]
    listed = f"{', '.join(offered[:-1])} or {offered[-1]}"
    return listed if len(offered) == 2 else f"one of {listed}"


def unknown(name: str) -> ConfigError:
    return ConfigError(VARIABLE, f"must be {choices(names())}, got {name!r}")


def load(name: str) -> Any:
    """The factory registered as ``name`` (called with the settings, it gives the launcher).

    ``ConfigError`` naming the variable when no launcher has that name, or when the one that
    has it cannot be imported (its package is not installed here, or is broken).
    """
    found = [entry for entry in _registered() if entry.name == name]
    if not found:
        raise unknown(name)
    entry = found[0]
    try:
        return entry.load()
    except Exception as exc:  # an ImportError, a missing attribute, a module that raised
        raise ConfigError(
            VARIABLE, f"the launcher {name!r} ({entry.value}) cannot be loaded here: {exc}"
        ) from exc


def _registered() -> list[Any]:
    # Imported here: reading the installed packages' metadata is only needed for a name
    # other than ``ecs``, and a Lambda cold start should not pay for it.
    from importlib.metadata import entry_points

    return list(entry_points(group=GROUP))
