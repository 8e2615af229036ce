"""Profiles: ``wakeful.toml`` (or ``~/.config/wakeful/config.toml``) instead of eight exports;
flags > environment > file."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from tests.cli.conftest import run_script, serve_api
from tests.conftest import BUCKET, TABLE
from wakeful_cli import profile

# What an operator's shell holds once the profile does the rest: AWS access only.
PROFILE_ONLY = ("DB_S3_BUCKET", "DB_S3_KEY", "WAKEFUL_LEASE_TABLE", "AWS_ENDPOINT_URL")


def bare(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in PROFILE_ONLY}


def write_profile(folder: Path, text: str, name: str = "wakeful.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def dev_profile(store_env) -> str:
    return profile.render("dev", {
        "bucket": BUCKET, "key": "db.sqlite3", "lease_table": TABLE,
        "endpoint_url": store_env["AWS_ENDPOINT_URL"], "region": "us-east-1",
    })


def test_a_profile_in_the_working_folder_replaces_the_exports(store_env, dev_profile, tmp_path):
    write_profile(tmp_path, dev_profile)
    result = run_script(bare(store_env), "--json", "lease", "show", cwd=tmp_path)
    assert result.code == 0, result.err
    assert json.loads(result.out)["table"] == TABLE
    without = run_script(bare(store_env), "lease", "show")
    assert without.code == 2 and "DB_S3_BUCKET: is required" in without.err


def test_the_user_config_file_is_read_when_the_folder_has_none(store_env, dev_profile, tmp_path):
    config_home = tmp_path / "config"
    write_profile(config_home / "wakeful", dev_profile, "config.toml")
    env = {**bare(store_env), "XDG_CONFIG_HOME": str(config_home)}
    result = run_script(env, "backups", cwd=tmp_path)
    assert result.code == 0, result.err
    assert result.out.startswith(f"Backups of s3://{BUCKET}/db.sqlite3 (0, newest first)")


def test_flags_beat_the_environment_which_beats_the_file(store_env, tmp_path):
    write_profile(tmp_path, profile.render("dev", {
        "bucket": "from-the-file", "lease_table": "table-from-the-file",
        "endpoint_url": store_env["AWS_ENDPOINT_URL"],
    }))
    env = {**bare(store_env), "DB_S3_BUCKET": BUCKET}
    # The environment's bucket wins over the file's; the file still gives the table.
    listed = run_script(env, "backups", cwd=tmp_path)
    assert listed.code == 0, listed.err
    assert f"s3://{BUCKET}/" in listed.out
    lease = run_script(env, "--json", "lease", "show", cwd=tmp_path)
    assert lease.code == 1 and "table-from-the-file" in lease.err
    # A flag wins over both.
    flagged = run_script(env, "--json", "lease", "show", "--table", TABLE, cwd=tmp_path)
    assert flagged.code == 0, flagged.err
    assert json.loads(flagged.out)["table"] == TABLE
    other = run_script(env, "--bucket", "flag-bucket", "backups", cwd=tmp_path)
    assert other.code == 1 and "NoSuchBucket" in other.err  # not the bucket that exists


def test_choosing_among_several_profiles(store_env, dev_profile, tmp_path):
    prod = profile.render("prod", {"bucket": "prod-bucket", "lease_table": TABLE,
                                   "endpoint_url": store_env["AWS_ENDPOINT_URL"]})
    write_profile(tmp_path, dev_profile + "\n" + prod)
    env = bare(store_env)
    unchosen = run_script(env, "backups", cwd=tmp_path)
    assert unchosen.code == 2
    assert unchosen.err == (
        f"wakeful: configuration error: WAKEFUL_PROFILE: {tmp_path / 'wakeful.toml'} has "
        "profiles dev, prod: choose one with --profile-name or WAKEFUL_PROFILE\n"
    )
    by_flag = run_script(env, "--profile-name", "dev", "backups", cwd=tmp_path)
    assert by_flag.code == 0, by_flag.err
    by_env = run_script({**env, "WAKEFUL_PROFILE": "prod"}, "backups", cwd=tmp_path)
    assert by_env.code == 1 and "NoSuchBucket" in by_env.err  # prod's bucket, not dev's
    missing = run_script(env, "--profile-name", "staging", "backups", cwd=tmp_path)
    assert missing.code == 2
    assert "no profile 'staging'" in missing.err and "dev, prod" in missing.err


def test_a_mistake_in_the_file_is_a_configuration_error(store_env, tmp_path):
    write_profile(tmp_path, '[profile.dev]\nbuckett = "typo"\n')
    typo = run_script(bare(store_env), "backups", cwd=tmp_path)
    assert typo.code == 2 and typo.err.count("\n") == 1
    assert "unknown key 'buckett'" in typo.err
    write_profile(tmp_path, "[profile.dev\n")
    broken = run_script(bare(store_env), "backups", cwd=tmp_path)
    assert broken.code == 2 and "cannot read" in broken.err
    named = run_script({**bare(store_env), "WAKEFUL_CONFIG": str(tmp_path / "nope.toml")},
                       "backups", cwd=tmp_path)
    assert named.code == 2 and "no profile file at" in named.err


def test_the_api_key_is_read_from_api_gateway_by_the_id_the_profile_names(
    cli_env, control_env, monkeypatch, tmp_path
):
    # API Gateway's keys are at least 20 characters.
    secret = "operator-key-of-api-gateway"
    server = serve_api(monkeypatch, control_env, key=secret)
    try:
        key = boto3.client("apigateway").create_api_key(name="operator", value=secret,
                                                        enabled=True)
        write_profile(tmp_path, profile.render("dev", {
            "api_url": server.url, "api_key_id": key["id"], "bucket": BUCKET,
            "lease_table": TABLE,
        }))
        env = {k: v for k, v in cli_env.items() if k != "DB_S3_BUCKET"}
        result = run_script(env, "--json", "status", cwd=tmp_path)
        wrong = run_script({**env, "WAKEFUL_API_KEY": "not-the-key"}, "status", cwd=tmp_path)
    finally:
        server.stop()
    assert result.code == 0, result.err
    assert json.loads(result.out)["state"] == "asleep"
    # The environment's key wins over the profile's key id (and is refused here).
    assert wrong.code == 1 and "HTTP 403" in wrong.err


def test_render_writes_what_load_reads(tmp_path):
    text = profile.render("local-1", {
        "bucket": "b", "api_url": "http://127.0.0.1:1/api", "api_key": 'quote " and \\ slash',
        "control_plane_log_groups": ["/aws/lambda/a", "/aws/lambda/b"], "cluster": None,
    })
    loaded = profile.load(write_profile(tmp_path, text), None)
    assert loaded is not None and loaded.name == "local-1"
    assert loaded.variables == {
        "DB_S3_BUCKET": "b", "WAKEFUL_API_URL": "http://127.0.0.1:1/api",
        "WAKEFUL_API_KEY": 'quote " and \\ slash',
        "WAKEFUL_CONTROL_PLANE_LOG_GROUPS": "/aws/lambda/a,/aws/lambda/b",
    }
