"""Fixtures for the Terraform tests: one scratch copy of infra/, packaged and initialised once.

The copy lives in a temporary folder so that state, the provider cache and the moto override
never touch the repository's infra/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.harness import (
    Terraform,
    copy_infra,
    package_control_plane,
    plugin_dir,
    terraform_binary,
)


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    binary = terraform_binary()
    if binary is None:
        pytest.skip("the terraform CLI is not on PATH: the infra tests need it")
    return binary


@pytest.fixture(scope="session")
def provider_mirror(terraform_bin: str) -> Path:
    found = plugin_dir()
    # The mirror ships with the machine image; a missing mirror is a broken machine, not a
    # reason to skip (set WAKEFUL_TF_PLUGIN_DIR if it lives elsewhere).
    assert found is not None, "no hashicorp/aws provider mirror found; set WAKEFUL_TF_PLUGIN_DIR"
    return found


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory, terraform_bin: str) -> Path:
    """infra/ plus the control plane module packaged from app.py for stage dev."""
    root = copy_infra(tmp_path_factory.mktemp("infra") / "infra")
    package_control_plane(root / "control_plane", stage="dev")
    return root


@pytest.fixture(scope="session")
def terraform(workdir: Path, terraform_bin: str, provider_mirror: Path) -> Iterator[Terraform]:
    """``terraform init`` from the local mirror, once for the session."""
    tf = Terraform(terraform_bin, workdir)
    tf.run("init", "-no-color", f"-plugin-dir={provider_mirror}")
    yield tf
