"""Drive the real Terraform CLI and checkov against a scratch copy of infra/.

Nothing here fakes Terraform: the CLI runs with the provider from the machine's filesystem
mirror, and applies to a moto server over HTTP through a provider override file, so that
infra/ itself stays exactly what a user deploys.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PACKAGE_SCRIPT = ROOT / "scripts" / "package_control_plane.py"

# Where machine images and users usually keep a provider mirror; WAKEFUL_TF_PLUGIN_DIR wins.
PLUGIN_ROOTS = (
    "/opt/tf-plugins",
    "/usr/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
)
PROVIDER_GLOB = "registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*"

# Every service endpoint the configuration touches; all point at the one moto server.
MOTO_SERVICES = (
    "apigateway",
    "cloudwatch",
    "cloudwatchlogs",
    "dynamodb",
    "ec2",
    "ecs",
    "events",
    "iam",
    "lambda",
    "s3",
    "sns",
    "sts",
)


def terraform_binary() -> str | None:
    return shutil.which(os.environ.get("WAKEFUL_TERRAFORM", "terraform"))


def plugin_dir() -> Path | None:
    """The folder to pass as ``-plugin-dir``: the parent of ``registry.terraform.io``."""
    override = os.environ.get("WAKEFUL_TF_PLUGIN_DIR")
    roots = [override] if override else list(PLUGIN_ROOTS)
    for root in roots:
        base = Path(root).expanduser()
        if base.is_dir() and any(base.glob(PROVIDER_GLOB)):
            return base
    return None


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment minus anything that could send Terraform to real AWS.

    The session's moto fixture exports AWS_ENDPOINT_URL for other tests, and a developer
    may have a profile: neither may leak into these runs.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(
        {
            "CHECKPOINT_DISABLE": "1",
            # The image may name a CLI config file that does not exist; Terraform warns on
            # every command then. An empty config changes nothing else.
            "TF_CLI_CONFIG_FILE": os.devnull,
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
        }
    )
    env.update(extra)
    return env


class TerraformError(AssertionError):
    pass


class Terraform:
    """One working directory, one binary, a clean environment."""

    def __init__(self, binary: str, workdir: Path, env: Mapping[str, str] | None = None):
        self.binary = binary
        self.workdir = workdir
        self.env = dict(env or clean_env())

    def run(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise TerraformError(
                f"terraform {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)

    def outputs(self) -> dict[str, Any]:
        return {name: o["value"] for name, o in self.json("output", "-json").items()}


def copy_infra(destination: Path) -> Path:
    """infra/ without local state, caches or a previously generated control plane."""
    ignore = shutil.ignore_patterns(
        ".terraform", "*.tfstate", "*.tfstate.*", "control_plane", "*.auto.tfvars*"
    )
    shutil.copytree(INFRA, destination, ignore=ignore)
    return destination


def package_control_plane(out: Path, stage: str = "dev") -> None:
    result = subprocess.run(
        [sys.executable, str(PACKAGE_SCRIPT), "--stage", stage, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"packaging failed:\n{result.stdout}\n{result.stderr}")


def moto_override(url: str, region: str) -> str:
    """A provider override (Terraform merges *_override.tf into the provider block)."""
    endpoints = "\n".join(f'    {name} = "{url}"' for name in MOTO_SERVICES)
    return f"""provider "aws" {{
  region                      = "{region}"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {{
{endpoints}
  }}
}}
"""


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
