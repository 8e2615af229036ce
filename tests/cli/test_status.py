"""``wakeful status``: read straight from AWS, or through the control plane API."""

from __future__ import annotations

import json
import time

from chalicelib.lease import HELD, LeaseTable
from tests.cli.conftest import field, run, run_process, woken


def test_status_while_asleep_reads_the_lease_and_bucket_directly(cli_env):
    result = run(cli_env, "status")
    assert result.code == 0, result.err
    assert "s3://wakeful-test-db/db.sqlite3" in result.out.splitlines()[0]
    assert field(result.out, "state") == "asleep"
    assert field(result.out, "lease") == "FREE"
    assert field(result.out, "task") == "-"
    assert field(result.out, "last upload") == "-"
    assert field(result.out, "backups") == "0"
    assert field(result.out, "unsynced stop") == "none"


def test_status_shows_holder_task_upload_and_backups(cli_env, settings, tmp_path):
    task, agent = woken(settings, tmp_path)
    agent.write(3)
    info = agent.upload("periodic")
    agent.store.create_backup(info, when=time.time() - 3600)
    result = run(cli_env, "status")
    assert result.code == 0, result.err
    assert field(result.out, "state") == "starting"  # no endpoint recorded yet
    assert field(result.out, "lease") == HELD
    assert field(result.out, "holder") == task["taskArn"]
    assert field(result.out, "token") == "1"
    assert field(result.out, "expires").startswith("in ")
    assert field(result.out, "task") == f"{task['taskArn']} (RUNNING)"
    upload = field(result.out, "last upload")
    assert "UTC" in upload and "ago" in upload
    assert f"{info.size / 1024:.1f} KiB" in upload
    assert "periodic" in upload and "token 1" in upload
    assert field(result.out, "backups") == "1"


def test_status_json_is_the_report_for_scripts(cli_env, settings, tmp_path):
    task, agent = woken(settings, tmp_path)
    agent.write()
    info = agent.upload("periodic")
    result = run(cli_env, "status", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["lease"]["state"] == HELD and report["lease"]["token"] == 1
    assert report["task"] == {"arn": task["taskArn"], "status": "RUNNING"}
    assert report["last_upload"]["version_id"] == info.version_id
    assert report["last_upload"]["reason"] == "periodic"
    assert report["backups"] == 0
    assert report["last_unsynced_stop"] is None


def test_status_shows_the_last_unsynced_stop_and_its_window(cli_env, settings):
    table = LeaseTable(settings.location.lease_table, settings.location.lease_name)
    stopped = time.time() - 120
    table.set_fields({"last_unsynced_stop": {
        "task_arn": "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/dead",
        "stopped_at": stopped, "window_seconds": 42.5, "killed": True, "detected_at": stopped,
    }})
    result = run(cli_env, "status")
    unsynced = field(result.out, "unsynced stop")
    assert "window 42s" in unsynced or "window 43s" in unsynced
    assert "killed" in unsynced and "task/wakeful-test/dead" in unsynced
    assert "2m00s ago" in unsynced or "2m01s ago" in unsynced


def test_status_through_the_api(api_env, settings, tmp_path):
    task, agent = woken(settings, tmp_path)
    agent.write()
    agent.upload("periodic")
    result = run(api_env, "status")
    assert result.code == 0, result.err
    assert "API http://127.0.0.1:" in result.out.splitlines()[0]
    assert field(result.out, "lease") == HELD
    assert field(result.out, "task") == f"{task['taskArn']} (RUNNING)"
    assert "periodic" in field(result.out, "last upload")
    as_json = json.loads(run(api_env, "status", "--json").out)
    assert as_json["source"].startswith("API ")
    assert as_json["lease"]["holder"] == task["taskArn"]
    # --direct reads the same facts without the API.
    direct = json.loads(run(api_env, "status", "--json", "--direct").out)
    assert direct["lease"] == as_json["lease"]
    assert direct["task"]["status"] == as_json["task"]["status"] == "RUNNING"


def test_the_direct_report_is_the_apis_report(api_env, settings, tmp_path):
    """One report for every door: read straight from AWS, it says what GET /status says."""
    task, agent = woken(settings, tmp_path)
    agent.write()
    agent.upload("periodic")
    through_api = json.loads(run(api_env, "status", "--json").out)
    direct = json.loads(run(api_env, "status", "--json", "--direct").out)
    assert through_api.pop("source").startswith("API ")
    assert direct.pop("source").startswith("s3://")
    # Only the control plane's launcher reports what ECS wants the task to become.
    assert through_api["task"].pop("desired_status") == "RUNNING"
    assert direct == through_api
    assert direct["task"] == {"arn": task["taskArn"], "status": "RUNNING"}


def test_status_through_the_api_without_a_key_is_refused_by_it(api_env):
    env = {k: v for k, v in api_env.items() if k != "WAKEFUL_API_KEY"}
    result = run(env, "status")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "HTTP 403" in result.err and "WAKEFUL_API_KEY" in result.err


def test_python_dash_m_runs_the_cli(cli_env):
    result = run_process(cli_env, "status", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["state"] == "asleep"
