"""How the installed ``wakeful`` reads its command line: exact option names, ``--version``,
``--json`` before or after the command."""

from __future__ import annotations

import json
from importlib.metadata import version

from tests.cli.conftest import run_script


def test_version_names_the_installed_package(store_env):
    result = run_script(store_env, "--version")
    assert result.code == 0, result.err
    assert result.out == f"wakeful {version('wakeful')}\n"


def test_an_abbreviated_option_is_refused_not_guessed(store_env):
    wait = run_script(store_env, "wake", "--wai")
    assert wait.code == 2
    assert wait.err.count("\n") == 1
    assert "unrecognized arguments: --wai" in wait.err
    # `--version` is not a short way of writing `--versions`: nothing is listed.
    versions = run_script(store_env, "backups", "--version")
    assert versions.code == 2 and versions.out == ""
    assert "unrecognized arguments: --version" in versions.err
    lease = run_script(store_env, "lease", "release", "--for")
    assert lease.code == 2 and "unrecognized arguments: --for" in lease.err


def test_json_is_accepted_before_the_command_too(store_env):
    before = run_script(store_env, "--json", "backups")
    after = run_script(store_env, "backups", "--json")
    assert before.code == 0, before.err
    assert json.loads(before.out) == json.loads(after.out) == {"backups": [], "versions": []}
    lease = run_script(store_env, "--json", "lease", "show")
    assert lease.code == 0, lease.err
    assert json.loads(lease.out)["state"] == "FREE"
