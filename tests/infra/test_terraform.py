"""infra/ is formatted, initialises from the local provider mirror, validates, and passes
checkov with every skipped check explained beside its resource."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.infra.harness import INFRA, Terraform, checkov_binary, run_checkov

SKIP_COMMENT = re.compile(r"checkov:skip=(?P<id>[A-Z0-9_]+):(?P<reason>.+)")


def test_fmt_check_on_infra_and_generated_module(terraform_bin: str, workdir: Path) -> None:
    tf = Terraform(terraform_bin, INFRA)
    result = tf.run("fmt", "-check", "-recursive", "-diff", "-no-color", check=False)
    assert result.returncode == 0, f"terraform fmt would change infra/:\n{result.stdout}"
    generated = Terraform(terraform_bin, workdir / "control_plane")
    result = generated.run("fmt", "-check", "-diff", "-no-color", check=False)
    assert result.returncode == 0, f"the generated module is not fmt-clean:\n{result.stdout}"


def test_init_took_the_provider_from_the_local_mirror(
    terraform: Terraform, provider_mirror: Path
) -> None:
    lock = (terraform.workdir / ".terraform.lock.hcl").read_text()
    version = re.search(
        r'provider "registry.terraform.io/hashicorp/aws" \{\s+version\s+= "([^"]+)"', lock
    )
    assert version, lock
    assert list(provider_mirror.glob(f"registry.terraform.io/hashicorp/aws/{version[1]}/*/*"))


def test_validate_is_clean(terraform: Terraform) -> None:
    report = terraform.json("validate", "-json", "-no-color")
    assert report["valid"], report["diagnostics"]
    # Warnings are deprecations in waiting: provider 6 turns them into errors.
    assert report["warning_count"] == 0, report["diagnostics"]


def test_generated_module_is_adapted_to_current_terraform(workdir: Path) -> None:
    module = workdir / "control_plane"
    document = json.loads((module / "main.tf.json").read_text())
    text = json.dumps(document)
    versions = (module / "versions.tf").read_text()

    assert "terraform" not in document and ">= 1.5.0" in versions and "< 6.0" in versions
    assert "null_data_source" not in text
    resources = document["resource"]
    assert "aws_iam_role" not in resources and "aws_iam_role_policy" not in resources
    assert {"api_handler", "on_task_state_change", "reconcile"} <= set(
        resources["aws_lambda_function"]
    )
    for function in resources["aws_lambda_function"].values():
        assert function["role"] == "${var.role_arn}"
        assert "var.environment" in function["environment"]["variables"]
    rules = resources["aws_cloudwatch_event_rule"]
    ecs_rule = next(r for r in rules.values() if "aws.ecs" in r.get("event_pattern", ""))
    pattern = json.loads(ecs_rule["event_pattern"])
    assert pattern["detail-type"] == ["ECS Task State Change"]
    assert pattern["detail"]["clusterArn"] == ["${var.cluster_arn}"]
    assert all(rule["name"].startswith("wakeful-dev-") for rule in rules.values())
    # The API follows enable_api; the deployment no longer carries the deprecated stage_name.
    for kind in ("aws_api_gateway_rest_api", "aws_api_gateway_deployment"):
        assert resources[kind]["rest_api"]["count"] == "${var.enable_api ? 1 : 0}"
    assert "stage_name" not in resources["aws_api_gateway_deployment"]["rest_api"]
    assert resources["aws_lambda_permission"]["rest_api_invoke"]["count"]
    swagger = json.loads(document["locals"]["chalice_api_swagger"])
    # API Gateway enforces the key only because the routes say so in the definition.
    for path in ("/wake", "/status", "/sleep"):
        for operation in swagger["paths"][path].values():
            assert operation["security"] == [{"api_key": []}], path


@pytest.fixture(scope="module")
def checkov_reports(workdir: Path, terraform: Terraform) -> dict[str, dict[str, Any]]:
    binary = checkov_binary()
    if binary is None:
        pytest.skip("pip could not install checkov into its virtual environment")
    return {report["check_type"]: report for report in run_checkov(binary, workdir)}


def test_checkov_hcl_has_no_failure_and_every_skip_has_a_reason(
    checkov_reports: dict[str, dict[str, Any]],
) -> None:
    report = checkov_reports["terraform"]
    assert report["summary"]["parsing_errors"] == 0
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        assert reason and reason != "No comment provided", check["check_id"]


def test_checkov_generated_json_failures_are_all_explained(
    checkov_reports: dict[str, dict[str, Any]], workdir: Path
) -> None:
    """checkov's Terraform JSON runner ignores skip comments, so this test reads them.

    The packaging script writes each skip as a "//" line inside the resource, in checkov's
    own skip syntax; every failure must match one with a reason.
    """
    report = checkov_reports.get("terraform_json")
    assert report is not None, "checkov did not scan the generated control plane module"
    assert report["summary"]["parsing_errors"] == 0
    document = json.loads((workdir / "control_plane" / "main.tf.json").read_text())
    explained: dict[str, set[str]] = {}
    for group in document["resource"].values():
        for name, body in group.items():
            for line in body.get("//", []):
                match = SKIP_COMMENT.fullmatch(line)
                assert match and match["reason"].strip(), line
                explained.setdefault(name, set()).add(match["id"])
    unexplained = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
        if c["check_id"] not in explained.get(c["resource"].split(".", 1)[-1], set())
    ]
    assert not unexplained, "\n".join(unexplained)


# -- the chain's retention window and the bucket's lifecycle -----------------------------------

REQUIRED_VARIABLES = ("image=x", "vpc_id=vpc-1", 'subnet_ids=["subnet-1"]')


def _console(
    terraform: Terraform, expression: str, **variables: object
) -> subprocess.CompletedProcess[str]:
    """Evaluate ``expression`` with ``terraform console`` (no state, no AWS call)."""
    arguments: list[str] = []
    for value in (*REQUIRED_VARIABLES, *(f"{k}={v}" for k, v in variables.items())):
        arguments += ["-var", value]
    return subprocess.run(
        [terraform.binary, "console", "-no-color", *arguments],
        cwd=terraform.workdir, env=terraform.env, input=expression + "\n",
        capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.mark.parametrize(
    "retention_days, noncurrent_days, expected",
    [(7, 30, 30), (40, 30, 41), (7, 3, 8)],
)
def test_superseded_versions_outlive_the_point_in_time_window_by_a_day(
    terraform: Terraform, retention_days: int, noncurrent_days: int, expected: int
) -> None:
    """Every base a restore point inside the window needs is a superseded version of the
    current object: the lifecycle keeps those at least ``retention_days + 1`` days, and the
    agent is told the same window."""
    result = _console(
        terraform,
        "jsonencode([local.noncurrent_version_expiration_days, "
        "local.agent_environment.WAKEFUL_RETENTION])",
        retention_days=retention_days, noncurrent_version_expiration_days=noncurrent_days,
    )
    assert result.returncode == 0 and "Error" not in result.stderr, result.stderr
    days, environment = json.loads(json.loads(result.stdout))
    assert days == expected >= retention_days + 1
    assert environment == str(retention_days * 86400)
    # The rule itself uses what was evaluated (the applied value: tests/infra/test_deploy.py).
    lifecycle = (INFRA / "s3.tf").read_text()
    assert re.search(r"noncurrent_days\s*=\s*local\.noncurrent_version_expiration_days", lifecycle)


@pytest.mark.parametrize("value", ["0", "0.5"])
def test_a_window_that_is_not_whole_days_is_refused(terraform: Terraform, value: str) -> None:
    result = _console(terraform, "var.retention_days", retention_days=value)
    assert "retention_days must be a whole number of days, at least 1." in result.stderr
