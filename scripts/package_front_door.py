#!/usr/bin/env python3
"""Package the front door Lambda (frontdoor/handler.py) as a zip of exactly what it imports.

The handler is imported and built in a child interpreter (with placeholder settings: nothing
is called), and every module that this loads is listed: the first-party ones (frontdoor,
chalicelib) and the third-party ones the Lambda runtime does not provide (Powertools and what
it needs) go into the zip, file by file; the standard library and boto3 with its own
dependencies come with the runtime. A module of another deployable (the agent, the CLI, the
local stack, Chalice) in that list stops the build: the front door must not load it.

The zip is reproducible (sorted entries, fixed timestamps), so Terraform's source_code_hash
changes only when the code does. scripts/package_control_plane.py calls this too, writing
infra/control_plane/front_door.zip next to the control plane's own package.

Usage: python scripts/package_front_door.py [--out infra/control_plane/front_door.zip]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "infra" / "control_plane" / "front_door.zip"
HANDLER = "frontdoor.handler.handler"
FIRST_PARTY = ("frontdoor", "chalicelib")
# Deployables of their own: the front door zip must never carry them.
FORBIDDEN = ("container", "wakeful_cli", "wakeful_local", "app", "chalice", "tests", "moto")
# What the python3.12 Lambda runtime ships beside the standard library. certifi too: botocore
# imports it when it is installed and uses its own CA bundle when not; a copy without its
# cacert.pem would break TLS.
RUNTIME_PROVIDED = (
    "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "certifi",
)
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)

# Runs in the child: import and build the handler the way its first invocation does, make
# Powertools log and emit once (it imports some of its parts on first use), and report every
# module that appeared, with the file and the sys.path entry it came from.
_PROBE = r"""
import json, os, sys
before = set(sys.modules)
from frontdoor import handler
door = handler.build(handler.log())
door.metrics.emit("PackagingProbe")
door.log.info("packaging probe")
door.handle({"not": "an event"})
found = {}
for name in sorted(set(sys.modules) - before):
    module = sys.modules[name]
    path = getattr(module, "__file__", None)
    if path:
        found[name] = os.path.abspath(path)
with open(sys.argv[1], "w") as out:
    json.dump({"modules": found, "path": [os.path.abspath(p) for p in sys.path if p]}, out)
"""

_PROBE_ENV = {
    "DB_S3_BUCKET": "packaging-probe",
    "WAKEFUL_LEASE_TABLE": "packaging-probe",
    "WAKEFUL_CLUSTER": "packaging-probe",
    "WAKEFUL_TASK_DEFINITION": "packaging-probe",
    "WAKEFUL_TASK_LAUNCHER": "ecs",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "probe",
    "AWS_SECRET_ACCESS_KEY": "probe",
}


class PackagingError(RuntimeError):
    """The front door's imports are not what its zip may carry."""


def imported_modules() -> tuple[dict[str, str], list[str]]:
    """{module: file} the handler loads, and the child's sys.path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WAKEFUL_", "DB_"))}
    env.update(_PROBE_ENV)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["POWERTOOLS_METRICS_NAMESPACE"] = "packaging-probe"
    with tempfile.TemporaryDirectory(prefix="front-door-probe.") as tmp:
        report = Path(tmp) / "modules.json"
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, str(report)],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=False,
        )
        if result.returncode != 0:
            raise PackagingError(f"importing {HANDLER} failed:\n{result.stderr[-4000:]}")
        data = json.loads(report.read_text())
    return data["modules"], data["path"]


def select(modules: dict[str, str], search_path: list[str]) -> dict[str, Path]:
    """{name in the zip: source file} for the modules the zip must carry."""
    stdlib = {
        os.path.abspath(sysconfig.get_paths()[key]) for key in ("stdlib", "platstdlib")
    }
    site = {
        os.path.abspath(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")
    }
    roots = sorted({os.path.abspath(p) for p in search_path}, key=len, reverse=True)
    chosen: dict[str, Path] = {}
    for name, path in modules.items():
        top = name.split(".", 1)[0]
        if top in FORBIDDEN:
            raise PackagingError(f"the front door imports {name}, which it must not carry")
        if top in RUNTIME_PROVIDED:
            continue
        if _under(path, stdlib) and not _under(path, site):
            continue
        root = next((r for r in roots if path.startswith(r + os.sep)), None)
        if root is None:
            raise PackagingError(f"{name} ({path}) is outside every sys.path entry")
        if not path.endswith(".py"):
            raise PackagingError(f"{name} is not pure Python ({path}): it cannot be packaged")
        arcname = os.path.relpath(path, root).replace(os.sep, "/")
        if root == str(REPO_ROOT) and top not in FIRST_PARTY:
            raise PackagingError(f"the front door imports {name} from the repository")
        chosen[arcname] = Path(path)
    missing = [p for p in FIRST_PARTY if not any(a.startswith(f"{p}/") for a in chosen)]
    if missing:
        raise PackagingError(f"nothing of {', '.join(missing)} was imported: wrong handler?")
    return chosen


def write_zip(files: dict[str, Path], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(out.suffix + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname in sorted(files):
            info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[arcname].read_bytes())
    partial.replace(out)


def build(out: Path = DEFAULT_OUT) -> list[str]:
    """Write the front door's zip to ``out``; the names it holds."""
    modules, search_path = imported_modules()
    files = select(modules, search_path)
    write_zip(files, out)
    return sorted(files)


def _under(path: str, roots: set[str]) -> bool:
    return any(path.startswith(root + os.sep) for root in roots)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"zip to write (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    try:
        names = build(args.out.resolve())
    except PackagingError as exc:
        print(f"package_front_door: {exc}", file=sys.stderr)
        return 1
    size = args.out.stat().st_size
    print(f"Packaged the front door ({len(names)} files, {size / 1024:.0f} KiB) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
