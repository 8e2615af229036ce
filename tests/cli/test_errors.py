"""Bad configuration and bad usage: one line on stderr and exit 2; unreachable services exit 1."""

from __future__ import annotations

from tests.cli.conftest import run, run_process
from tests.moto_server import free_port


def test_missing_configuration_is_one_line_and_exit_2(store_env):
    env = {k: v for k, v in store_env.items() if k != "DB_S3_BUCKET"}
    result = run_process(env, "backups")
    assert result.code == 2
    assert result.out == ""
    assert result.err == (
        "wakeful: configuration error: DB_S3_BUCKET: is required but not set "
        "(set it or pass --bucket)\n"
    )
    table = run({k: v for k, v in store_env.items() if k != "WAKEFUL_LEASE_TABLE"},
                "lease", "show")
    assert table.code == 2 and "WAKEFUL_LEASE_TABLE" in table.err and "--table" in table.err


def test_flags_override_the_environment(store_env):
    env = {k: v for k, v in store_env.items() if k not in ("DB_S3_BUCKET", "WAKEFUL_LEASE_TABLE")}
    result = run(env, "--bucket", "wakeful-test-db", "lease", "show", "--table",
                 "wakeful-test-leases", "--json")
    assert result.code == 0, result.err
    bad = run(store_env, "--bucket", "Not_A_Bucket", "backups")
    assert bad.code == 2 and "not a valid S3 bucket name" in bad.err


def test_unknown_profile_and_bad_usage(store_env):
    profile = run(store_env, "--profile", "no-such-profile", "backups")
    assert profile.code == 2
    assert profile.err == (
        "wakeful: configuration error: AWS_PROFILE: no such profile 'no-such-profile'\n"
    )
    usage = run(store_env, "lease")
    assert usage.code == 2 and usage.err.count("\n") == 1
    timeout = run(store_env, "wake", "--timeout", "-1")
    assert timeout.code == 2 and "must be positive" in timeout.err


def test_unreachable_services_fail_with_exit_1(store_env):
    port = free_port()
    api = run({**store_env, "WAKEFUL_API_URL": f"http://127.0.0.1:{port}"}, "sleep")
    assert api.code == 1 and api.err.count("\n") == 1
    assert api.err.startswith(f"wakeful: error: cannot reach the control plane at "
                              f"http://127.0.0.1:{port}")
    table = run({**store_env, "WAKEFUL_LEASE_TABLE": "no-such-table"}, "lease", "show")
    assert table.code == 1 and table.err.count("\n") == 1
    assert "no-such-table" in table.err
