"""Terraform for the local stack and the infra tests: the real CLI, the machine's provider
mirror, and a provider override that sends every AWS call to a moto server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
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
    "cloudformation",
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
    "sqs",
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
            # Out of the terminal's process group: a Ctrl-C is ours to handle (run() kills it).
            start_new_session=True,
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




def available() -> bool:
    """The Terraform CLI and a provider mirror are both on this machine."""
    return terraform_binary() is not None and plugin_dir() is not None


@contextlib.contextmanager
def still_running(
    say: Callable[[str], None], what: str, every: float = 10.0
) -> Iterator[None]:
    """A progress line every ``every`` seconds while a long step runs, so a terminal is never
    silent for a minute."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            say(f"{what}: still running ({time.monotonic() - started:.0f} s)")

    threading.Thread(target=tick, name="progress", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def apply(
    moto_url: str, workdir: Path, region: str, variables: Mapping[str, Any],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """``terraform apply`` of infra/ (stage ``local``) to the moto server; its outputs."""
    binary, mirror = terraform_binary(), plugin_dir()
    if binary is None or mirror is None:
        raise TerraformError("the Terraform CLI or the provider mirror is missing")
    copy_infra(workdir)
    say("packaging the control plane (chalice package, stage local)...")
    with still_running(say, "packaging the control plane"):
        package_control_plane(workdir / "control_plane", stage="local")
    (workdir / "moto_override.tf").write_text(moto_override(moto_url, region))
    tf = Terraform(binary, workdir)
    say(f"terraform init (provider mirror {mirror})...")
    with still_running(say, "terraform init"):
        tf.run("init", "-input=false", "-no-color", f"-plugin-dir={mirror}")
    (workdir / "local.auto.tfvars.json").write_text(json.dumps(dict(variables)))
    say("terraform apply of infra/ to moto (without the REST API: moto takes OpenAPI 3 only)")
    with still_running(say, "terraform apply"):
        tf.run("apply", "-auto-approve", "-no-color", "-parallelism=20")
    return tf.outputs()
