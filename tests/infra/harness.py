"""Drive the real Terraform CLI and checkov against a scratch copy of infra/.

Nothing here fakes Terraform: the CLI runs with the provider from the machine's filesystem
mirror, and applies to a moto server over HTTP through a provider override file, so that
infra/ itself stays exactly what a user deploys.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PACKAGE_SCRIPT = ROOT / "scripts" / "package_control_plane.py"

from wakeful_local.terraform import (  # noqa: E402 - one implementation for both
    MOTO_SERVICES,
    PLUGIN_ROOTS,
    PROVIDER_GLOB,
    Terraform,
    TerraformError,
    clean_env,
    copy_infra,
    moto_override,
    package_control_plane,
    plugin_dir,
    terraform_binary,
)

__all__ = [
    "MOTO_SERVICES",
    "PLUGIN_ROOTS",
    "PROVIDER_GLOB",
    "Terraform",
    "TerraformError",
    "clean_env",
    "copy_infra",
    "moto_override",
    "package_control_plane",
    "plugin_dir",
    "terraform_binary",
]


# ---------------------------------------------------------------------------
# checkov, in a virtual environment of its own (it pins an older boto3)
# ---------------------------------------------------------------------------


def checkov_binary() -> Path | None:
    """checkov from WAKEFUL_CHECKOV_VENV (default .venv-checkov), installed on first use."""
    home = Path(os.environ.get("WAKEFUL_CHECKOV_VENV", ROOT / ".venv-checkov"))
    binary = home / "bin" / "checkov"
    if binary.exists():
        return binary
    try:
        venv.create(home, with_pip=True, clear=True)
        subprocess.run(
            [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", "checkov"],
            check=True,
            capture_output=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return binary if binary.exists() else None


def run_checkov(binary: Path, directory: Path) -> list[dict[str, Any]]:
    """checkov's JSON reports (one per framework) for a Terraform folder."""
    result = subprocess.run(
        [
            str(binary),
            "--directory",
            str(directory),
            "--framework",
            "terraform",
            "terraform_json",
            "--skip-path",
            r"\.terraform",
            # No network here: without this, checkov tries to fetch its guideline mappings.
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_env(),
        check=False,
    )
    # Exit 1 means "some checks failed"; anything else is checkov itself failing.
    if result.returncode not in (0, 1):
        raise AssertionError(f"checkov exited {result.returncode}:\n{result.stderr[-4000:]}")
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


# ---------------------------------------------------------------------------
# IAM policy documents
# ---------------------------------------------------------------------------


def as_list(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def state_resources(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every resource in ``terraform show -json`` output, child modules included."""
    found: list[dict[str, Any]] = []

    def walk(module: Mapping[str, Any]) -> None:
        found.extend(module.get("resources", []))
        for child in module.get("child_modules", []):
            walk(child)

    walk(state.get("values", {}).get("root_module", {}))
    return found
