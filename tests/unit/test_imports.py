"""Imports point one way: the kernel (``chalicelib``) imports no backend, the agent and the
operator CLI do not import each other, and what the control plane may use loads no SQLite.

Each check imports the modules in a fresh interpreter with the forbidden packages blocked, so
a lazy import inside a function that runs at import time is caught too; the static checks read
every import statement (in functions too), so one that runs only on some path is caught too.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

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
exec(sys.argv[3])
print(" ".join(sorted(name for name in ("sqlite3", "_sqlite3") if name in sys.modules)))
"""

BACKENDS = ("container", "wakeful_cli", "wakeful_local")
# Every part that is not the control plane's Lambda.
NOT_THE_LAMBDA = (*BACKENDS, "wakeful_replica", "frontdoor")
KERNEL = ROOT / "chalicelib"

# What the Lambda's first invocation reads, with placeholder values: nothing is called.
LAMBDA_ENV = {
    "DB_S3_BUCKET": "import-rules", "WAKEFUL_LEASE_TABLE": "import-rules",
    "WAKEFUL_CLUSTER": "import-rules", "WAKEFUL_TASK_DEFINITION": "import-rules",
    "WAKEFUL_API_KEY_SHA256": "0" * 64, "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "import-rules", "AWS_SECRET_ACCESS_KEY": "import-rules",
}

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


def imported(
    modules: tuple[str, ...], blocked: tuple[str, ...], then: str = "",
    env: dict[str, str] | None = None,
) -> list[str]:
    """Import ``modules`` with ``blocked`` packages forbidden, then run ``then``; the SQLite
    modules that loaded (``then`` may print more before them)."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTER, ",".join(blocked), ",".join(modules), then],
        cwd=str(ROOT), capture_output=True, text=True, timeout=120,
        env={**_clean_env(), **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "WAKEFUL_", "DB_", "POWERTOOLS_"))}


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


def test_the_lambda_builds_its_control_plane_without_any_other_part_and_without_sqlite():
    # Imported and built as the first invocation builds it: every room, edge and client.
    loaded = imported(("app",), NOT_THE_LAMBDA, then="import app; app.control()", env=LAMBDA_ENV)
    assert loaded == []


def test_deciding_loads_records_and_events_and_nothing_else():
    assert kernel_imports(KERNEL / "decisions.py") == {"chalicelib.events", "chalicelib.model"}
    show = ("import sys; print(' '.join(sorted(m for m in sys.modules if m.partition('.')[0] "
            "in ('chalicelib', 'boto3', 'botocore', 'aws_lambda_powertools'))))")
    loaded = imported(("chalicelib.decisions",), NOT_THE_LAMBDA, then=show)
    assert loaded == ["chalicelib", "chalicelib.decisions", "chalicelib.errors",
                      "chalicelib.events", "chalicelib.model"]


def test_the_records_are_standard_library_only():
    show = ("import sys; print(' '.join(sorted(m for m in sys.modules if m.partition('.')[0] "
            "in ('chalicelib', 'boto3', 'botocore', 'aws_lambda_powertools'))))")
    assert imported(("chalicelib.model",), NOT_THE_LAMBDA, then=show) == [
        "chalicelib", "chalicelib.model"
    ]


def test_the_kernel_names_no_other_part_even_in_a_function():
    """A local stand-in is registered from outside (an entry point), never imported by name."""
    for path in sorted(KERNEL.rglob("*.py")):
        named = {name.partition(".")[0] for name in package_script().imported_names(path)}
        assert not named & set(NOT_THE_LAMBDA), path.relative_to(ROOT)


def test_only_settings_reads_the_environment():
    readers = []
    for path in [ROOT / "app.py", *sorted(KERNEL.rglob("*.py"))]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                readers.append(path.relative_to(ROOT).as_posix())
    assert set(readers) == {"chalicelib/settings.py"}


def test_no_import_circle_is_left_in_the_kernel():
    script = package_script()
    graph: dict[str, set[str]] = {}
    for entry in ["app", *sorted(module_name(p) for p in KERNEL.rglob("*.py"))]:
        graph.update(script.import_graph(ROOT, entry))
    assert circles(graph) == []


def test_the_store_loads_no_sqlite():
    # The control plane reads the store (head-object proofs); checking a database is the
    # agent's and the operator tools' (chalicelib.integrity), and only they load SQLite.
    assert imported(("chalicelib.store", "chalicelib.files"), BACKENDS) == []


# -- helpers -------------------------------------------------------------------------------


def package_script():
    """scripts/package_control_plane.py, whose import reading decides what the Lambda carries."""
    path = ROOT / "scripts" / "package_control_plane.py"
    spec = importlib.util.spec_from_file_location("package_control_plane", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def kernel_imports(path: Path) -> set[str]:
    """The kernel modules ``path`` imports (for type checking only is not importing)."""
    script = package_script()
    return {name for name in script.imported_names(path)
            if script.module_file(ROOT, name) is not None and name != "chalicelib"}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle of ``graph``, as the modules around it."""
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph.get(name, ())):
            if state.get(other) == "open":
                found.append([*path[path.index(other):], other])
            elif other not in state:
                visit(other, [*path, other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found
