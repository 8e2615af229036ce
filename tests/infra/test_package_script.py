"""scripts/package_control_plane.py refuses Chalice output it does not know how to adapt."""

from __future__ import annotations

import copy
import importlib.util
import json
import zipfile
from types import ModuleType
from typing import Any

import pytest

from tests.infra.harness import PACKAGE_SCRIPT


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_control_plane", PACKAGE_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()

# The shape `chalice package --pkg-format terraform` writes, cut down to one function and rule.
CHALICE_OUTPUT: dict[str, Any] = {
    "resource": {
        "aws_iam_role": {"handler_role": {"name": "wakeful-dev-handler"}},
        "aws_lambda_function": {
            "handler": {
                "function_name": "wakeful-dev-handler",
                "tags": {"aws-chalice": "version=1.34.0:stage=dev:app=wakeful"},
                "environment": {"variables": {"LOG_LEVEL": "INFO", "ODD": "${not a ref}"}},
                "role": "${aws_iam_role.handler_role.arn}",
            }
        },
        "aws_cloudwatch_event_rule": {
            "handler-event": {
                "name": "handler-event",
                "event_pattern": '{"source": ["aws.ecs"]}',
            }
        },
    },
    "terraform": {"required_version": ">= 0.12.26, < 1.4.0"},
    "data": {"null_data_source": {"chalice": {"inputs": {}}}},
}


def test_adapts_role_environment_rule_and_pins() -> None:
    files, app = script.adapt(copy.deepcopy(CHALICE_OUTPUT), "dev")
    assert app == "wakeful"
    module = json.loads(files["main.tf.json"])
    assert "terraform" not in module and "data" not in module
    function = module["resource"]["aws_lambda_function"]["handler"]
    assert function["role"] == "${var.role_arn}"
    assert function["depends_on"] == ["aws_cloudwatch_log_group.handler"]
    # A literal "${" in a Chalice value must not become a Terraform reference.
    assert module["locals"]["chalice_environment"]["handler"]["ODD"] == "$${not a ref}"
    rule = module["resource"]["aws_cloudwatch_event_rule"]["handler-event"]
    assert rule["name"] == "wakeful-dev-handler"
    assert json.loads(rule["event_pattern"])["detail"]["clusterArn"] == ["${var.cluster_arn}"]
    assert ">= 1.5.0" in files["versions.tf"]
    assert "value       = null" in files["outputs.tf"]  # no API: null API outputs


def test_refuses_unknown_resource_types() -> None:
    output = copy.deepcopy(CHALICE_OUTPUT)
    output["resource"]["aws_sqs_queue"] = {"q": {}}
    with pytest.raises(script.PackagingError, match="aws_sqs_queue"):
        script.adapt(output, "dev")


def test_refuses_a_package_of_another_stage() -> None:
    with pytest.raises(script.PackagingError, match="stage 'dev', not 'prod'"):
        script.adapt(copy.deepcopy(CHALICE_OUTPUT), "prod")


def test_will_not_delete_a_folder_it_did_not_generate(tmp_path: Any) -> None:
    out = tmp_path / "control_plane"
    out.mkdir()
    (out / "precious.tf").write_text("# hand-written\n")
    package = tmp_path / "deployment.zip"
    package.write_bytes(b"zip")
    with pytest.raises(script.PackagingError, match="not generated"):
        script.write_module(out, {"main.tf.json": "{}"}, package)
    assert (out / "precious.tf").exists()


# -- the Lambda zip carries what app.py imports, and nothing else ----------------------------

ROOT = PACKAGE_SCRIPT.parent.parent
# What the agent and the operator CLI run, and never the Lambda: restore and integrity load
# SQLite; the others are their operations.
AGENT_AND_CLI_ONLY = ("chalicelib/restore.py", "chalicelib/integrity.py", "chalicelib/download.py",
                      "chalicelib/hold.py", "chalicelib/keeper.py", "chalicelib/sources.py",
                      "chalicelib/listing.py", "chalicelib/text.py")


def test_the_lambda_carries_app_py_and_the_kernel_modules_it_reaches() -> None:
    files = script.lambda_files(ROOT)
    assert {name.split("/", 1)[0] for name in files} == {"app.py", "chalicelib"}
    for present in ("app.py", "chalicelib/control.py", "chalicelib/plane/wake.py",
                    "chalicelib/plane/reconciler.py", "chalicelib/decisions.py",
                    "chalicelib/model.py", "chalicelib/store.py", "chalicelib/report.py"):
        assert present in files, present
    for absent in AGENT_AND_CLI_ONLY:
        assert absent not in files, absent
    for name in files:
        tops = {n.split(".", 1)[0] for n in script.imported_names(ROOT / name)}
        assert not tops & set(script.SQLITE_MODULES), name


def test_the_zip_chalice_builds_holds_exactly_those_files(tmp_path: Any) -> None:
    staged = tmp_path / "project"
    code = script.stage_project(ROOT, staged)
    # Dependencies do not change which of our files go in; without them pip stays out.
    (staged / "requirements.txt").write_text("")
    script.run_chalice(staged, "dev", tmp_path / "out")
    names = zipfile.ZipFile(tmp_path / "out" / "deployment.zip").namelist()
    ours = sorted(n for n in names if n == "app.py" or n.startswith("chalicelib/"))
    assert ours == code
    assert not any(name in names for name in AGENT_AND_CLI_ONLY)


def write_project(root: Any, modules: dict[str, str]) -> None:
    for name, text in modules.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("modules", "problem"),
    [
        ({"chalicelib/__init__.py": "", "chalicelib/edge.py": "import sqlite3\n",
          "app.py": "def handler():\n    from chalicelib import edge\n"},
         "chalicelib.edge imports sqlite3"),
        ({"chalicelib/__init__.py": "", "container/__init__.py": "",
          "container/agent.py": "", "app.py": "import container.agent\n"},
         "app imports container"),
    ],
    ids=["sqlite, imported lazily", "the agent"],
)
def test_a_lambda_that_would_load_sqlite_or_another_part_is_not_built(
    tmp_path: Any, modules: dict[str, str], problem: str
) -> None:
    write_project(tmp_path, modules)
    with pytest.raises(script.PackagingError, match=problem):
        script.lambda_files(tmp_path)


def test_an_import_for_type_checking_only_is_not_carried(tmp_path: Any) -> None:
    write_project(tmp_path, {
        "chalicelib/__init__.py": "", "chalicelib/heavy.py": "import sqlite3\n",
        "app.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                  "    from chalicelib import heavy\n",
    })
    assert script.lambda_files(tmp_path) == ["app.py"]
