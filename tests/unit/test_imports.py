"""Imports point one way: the kernel (``chalicelib``) imports no backend, the agent and the
operator CLI do not import each other, and what the control plane may use loads no SQLite.

Each check imports the modules in a fresh interpreter with the forbidden packages blocked, so
a lazy import inside a function that runs at import time is caught too.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

IMPORTER = """
import importlib, sys

class Forbidden:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ImportError(f"{name} must not be imported here")
        return None

sys.meta_path.insert(0, Forbidden(set(filter(None, sys.argv[1].split(",")))))
for module in sys.argv[2].split(","):
    importlib.import_module(module)
print(" ".join(sorted(name for name in ("sqlite3", "_sqlite3") if name in sys.modules)))
"""

BACKENDS = ("container", "wakeful_cli", "wakeful_local")

# The operations both doors use, and the constants they share.
SHARED = (
    "chalicelib.exits",
    "chalicelib.stamps",
    "chalicelib.sources",
    "chalicelib.listing",
    "chalicelib.report",
    "chalicelib.hold",
    "chalicelib.restore",
    "chalicelib.keeper",
    "chalicelib.integrity",
    "chalicelib.files",
)


def imported(modules: tuple[str, ...], blocked: tuple[str, ...]) -> list[str]:
    """Import ``modules`` with ``blocked`` packages forbidden; the SQLite modules that loaded."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTER, ",".join(blocked), ",".join(modules)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


@pytest.mark.parametrize(
    ("door", "other"),
    [("wakeful_cli.cli", ("container", "wakeful_local")),
     ("container.cli", ("wakeful_cli", "wakeful_local", "frontdoor"))],
)
def test_each_door_runs_without_the_other_and_without_the_local_stack(door, other):
    imported((door,), other)


def test_the_shared_operations_import_no_backend():
    imported(SHARED, BACKENDS)


def test_the_shared_pieces_a_lambda_may_use_load_no_sqlite():
    assert imported(("chalicelib.exits", "chalicelib.stamps", "chalicelib.sources",
                     "chalicelib.listing"), BACKENDS) == []


def test_the_store_loads_no_sqlite():
    # The control plane reads the store (head-object proofs); checking a database is the
    # agent's and the operator tools' (chalicelib.integrity), and only they load SQLite.
    assert imported(("chalicelib.store", "chalicelib.files"), BACKENDS) == []
