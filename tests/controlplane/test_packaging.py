"""What API Gateway enforces, read from the API definition ``chalice package`` produces.

chalice.test.Client does not enforce ``api_key_required`` (API Gateway does), so the key and
IAM requirements are shown here, in the Swagger that is deployed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ROUTES = {("/wake", "post"), ("/status", "get"), ("/sleep", "post")}


def package(project: Path, stage: str, out: Path) -> dict[str, Any]:
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    subprocess.run(
        [sys.executable, "-c", "from chalice.cli import main; main()",
         "--project-dir", str(project), "package", "--stage", stage, str(out)],
        check=True, env=env, capture_output=True, timeout=120,
    )
    return json.loads((out / "sam.json").read_text())


def swagger(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]


def copy_project(tmp_path: Path, auth: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "app.py", project / "app.py")
    # Dependencies do not shape the API definition; leaving them out keeps pip out of the test.
    (project / "requirements.txt").write_text("")
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    config["stages"]["dev"]["environment_variables"]["WAKEFUL_AUTH"] = auth
    (project / ".chalice").mkdir()
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    for policy in (ROOT / ".chalice").glob("policy-*.json"):
        shutil.copy(policy, project / ".chalice" / policy.name)
    return project


def test_every_route_requires_an_api_key_by_default(tmp_path):
    template = package(copy_project(tmp_path, "api_key"), "dev", tmp_path / "out")
    api = swagger(template)
    assert api["securityDefinitions"]["api_key"] == {
        "type": "apiKey", "name": "x-api-key", "in": "header"
    }
    for path, method in ROUTES:
        assert api["paths"][path][method]["security"] == [{"api_key": []}], path
    functions = {name for name, r in template["Resources"].items()
                 if r["Type"] == "AWS::Serverless::Function"}
    assert functions == {"APIHandler", "OnTaskStateChange", "Reconcile"}


def test_iam_mode_requires_signed_requests(tmp_path):
    api = swagger(package(copy_project(tmp_path, "iam"), "dev", tmp_path / "out"))
    assert api["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    for path, method in ROUTES:
        assert api["paths"][path][method]["security"] == [{"sigv4": []}], path


def test_the_task_state_rule_matches_ecs_task_state_changes(tmp_path):
    template = package(copy_project(tmp_path, "api_key"), "dev", tmp_path / "out")
    events = template["Resources"]["OnTaskStateChange"]["Properties"]["Events"]
    [rule] = events.values()
    assert rule["Properties"]["Pattern"] == {
        "source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]
    }

def test_the_handlers_run_as_the_stages_policy_file_and_nothing_else(tmp_path):
    template = package(copy_project(tmp_path, "api_key"), "dev", tmp_path / "out")
    resources = template["Resources"]
    expected = json.loads((ROOT / ".chalice" / "policy-dev.json").read_text())
    for name in ("OnTaskStateChange", "Reconcile", "APIHandler"):
        function = resources[name]["Properties"]
        # No SAM policy of its own beside the role: the role is all it may do.
        assert "Policies" not in function, name
        [role, attribute] = function["Role"]["Fn::GetAtt"]
        assert attribute == "Arn" and resources[role]["Type"] == "AWS::IAM::Role", name
        [policy] = resources[role]["Properties"]["Policies"]
        assert policy["PolicyDocument"] == expected, name
