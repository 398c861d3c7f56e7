"""The deployment files: the systemd units (``systemd-analyze verify`` when available, and their settings against
the daemon's defaults) and the Dockerfile (read statically: no Docker daemon is needed)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from daemon import EXECUTABLE

from faktoryd.cli import build_parser
from faktoryd.config import load_config
from faktoryd.supervisor.startup import STOP_MARGIN

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
UNITS = [ROOT / "systemd" / "faktoryd.service", ROOT / "systemd" / "faktoryd@.service"]
DOCKERFILE = ROOT / "Dockerfile"
UNIT_EXECUTABLE = "/opt/faktoryd/venv/bin/faktoryd"


# ---------------------------------------------------------------------------------------------- systemd


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file, all sections together (the keys used here are unique)."""
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def seconds(span: str) -> float:
    """A systemd time span as used in the units ('40s', '1min 30s', '90')."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        total += float(number) * units[unit or "s"]
    return total


def default_config(tmp_path: Path):
    """The daemon's defaults: a config that sets nothing but a module."""
    path = tmp_path / "minimal.toml"
    path.write_text('[app]\nmodules = ["myapp.jobs"]\n')
    return load_config(path, environ={})


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_has_the_settings_the_daemon_relies_on(unit: Path) -> None:
    s = unit_settings(unit)
    one = {key: values[-1] for key, values in s.items()}
    assert one["Type"] == "notify"
    assert one["NotifyAccess"] == "main"  # the supervisor notifies; children's sockets are removed
    assert seconds(one["WatchdogSec"]) > 0
    assert one["KillMode"] == "mixed"  # TERM to the supervisor only; it stops its children itself
    assert one.get("KillSignal", "SIGTERM") == "SIGTERM"
    assert one["Restart"] == "on-failure"  # exit 0 (terminate from the web UI) keeps it stopped
    assert set(one["RestartPreventExitStatus"].split()) == {"2", "3"}
    assert re.fullmatch(r"/bin/kill -HUP \$MAINPID", one["ExecReload"])
    assert one["User"] and one["User"] != "root"
    assert "EnvironmentFile" in one and "LoadCredential" in one
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "RestrictSUIDSGID"):
        assert one[hardening] == "yes", hardening
    assert one["ProtectSystem"] == "strict"
    assert "AF_UNIX" in one["RestrictAddressFamilies"]  # sd_notify needs it
    exec_start = shlex.split(one["ExecStart"])
    assert exec_start[0] == UNIT_EXECUTABLE
    args = build_parser().parse_args(exec_start[1:])
    assert args.command == "run" and args.config.startswith("/etc/faktoryd/")


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_stop_timeout_covers_the_default_shutdown_timeout(unit: Path, tmp_path: Path) -> None:
    """TimeoutStopSec must leave the supervisor its whole graceful stop: shutdown_timeout for the jobs, then its
    own margin to kill stragglers and FAIL their jobs, or systemd SIGKILLs it and those jobs wait 30 minutes."""
    shutdown_timeout = default_config(tmp_path).worker.shutdown_timeout
    stop = seconds(unit_settings(unit)["TimeoutStopSec"][-1])
    needed = shutdown_timeout + STOP_MARGIN + 5
    assert stop >= needed, f"TimeoutStopSec={stop:g}s, shutdown_timeout={shutdown_timeout:g}s: want >= {needed:g}s"
    assert stop <= shutdown_timeout + 60, "a stop that hangs should not block a deploy for minutes"
    watchdog = seconds(unit_settings(unit)["WatchdogSec"][-1])
    assert watchdog >= 10, "the supervisor pings every WatchdogSec/2 from a loop that may block ~5 s sending FAILs"


def test_units_verify_with_systemd_analyze(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on both units, with ExecStart pointed at this checkout's executable (verify
    requires the command to exist). Any complaint that names one of our units fails the test."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    targets = []
    for unit in UNITS:
        name = unit.name.replace("@.", "@demo.")  # an instance of the template, so %i is expanded
        copy = tmp_path / name
        text = unit.read_text()
        assert UNIT_EXECUTABLE in text
        copy.write_text(text.replace(UNIT_EXECUTABLE, EXECUTABLE))
        targets.append(copy)
    result = subprocess.run(
        [tool, "verify", "--man=no", *map(str, targets)], capture_output=True, text=True, timeout=60, check=False
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and "faktoryd" not in output:
        pytest.skip(f"systemd-analyze verify cannot run here: {output.strip()[:300]}")
    ours = [line for line in output.splitlines() if "faktoryd" in line]
    assert ours == [], "\n".join(ours)
    assert result.returncode == 0, output


# ---------------------------------------------------------------------------------------------- Docker


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends with a continuation line"
    return instructions


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arguments
    return value


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return instructions[starts[-1] :]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (last matching rule wins; a rule that
    matches a parent directory matches what is inside it)."""
    rules = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        pattern = pattern.removeprefix("**/")
        if any(fnmatch.fnmatchcase(c, pattern) or fnmatch.fnmatchcase(Path(c).name, pattern) for c in candidates):
            excluded = not negate
    return excluded


def copy_sources(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(source, destination) of every COPY from the build context (not ``--from=`` another stage)."""
    pairs = []
    for word, rest in instructions:
        if word != "COPY":
            continue
        args = shlex.split(rest)
        if any(a.startswith("--from=") for a in args):
            continue
        paths = [a for a in args if not a.startswith("--")]
        pairs += [(source, paths[-1]) for source in paths[:-1]]
    return pairs


def test_dockerfile_copies_only_files_that_exist_and_reach_the_context() -> None:
    pairs = copy_sources(dockerfile_instructions())
    assert pairs, "the Dockerfile copies nothing from the context"
    for source, _ in pairs:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
        if (ROOT / source).is_dir():
            kept = [p for p in (ROOT / source).rglob("*.py") if not dockerignored(str(p.relative_to(ROOT)))]
            assert kept, f"COPY {source}: .dockerignore drops every Python file in it"
    for unwanted in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "faktoryd/__pycache__/x.pyc"):
        assert dockerignored(unwanted), f"{unwanted} would be sent to the Docker daemon"


def test_dockerfile_runtime_stage() -> None:
    instructions = dockerfile_instructions()
    stage = final_stage(instructions)
    words = dict(stage)
    base = stage[0][1]
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim", base), base
    assert re.search(r"ARG PYTHON_VERSION=3\.\d+", "\n".join(f"{w} {a}" for w, a in instructions))
    runs = " ".join(a for w, a in stage if w == "RUN")
    assert "pip install --no-cache-dir /wheels/" in runs
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in runs, f"the runtime stage installs {tool}"
    user = words["USER"]
    assert user not in ("root", "0") and "useradd --system --uid 10001 --gid faktoryd" in runs
    assert words["STOPSIGNAL"] == "SIGTERM"

    entrypoint = exec_form(words["ENTRYPOINT"])
    cmd = exec_form(words["CMD"])
    assert entrypoint == ["faktoryd"]
    assert cmd == ["--config", "/etc/faktoryd/faktory.toml"]
    with open(ROOT / "pyproject.toml", "rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]
    assert scripts["faktoryd"] == "faktoryd.cli:main"
    assert build_parser().parse_args(cmd).command == "run"

    health = words["HEALTHCHECK"]
    options, _, command = health.partition("CMD ")
    assert "--start-period=" in options and "--interval=" in options
    check = exec_form(command)
    assert check[0] == "faktoryd"
    parsed = build_parser().parse_args(check[1:])
    assert parsed.command == "status" and parsed.config == cmd[1], "the health check must read the daemon's config"


def test_dockerfile_default_config_loads_and_imports_the_examples(tmp_path: Path) -> None:
    """The config the image runs by default, with /opt/faktoryd/examples mapped to this checkout."""
    pairs = dict((dest, source) for source, dest in copy_sources(dockerfile_instructions()))
    source = ROOT / pairs["/etc/faktoryd/faktory.toml"]
    examples_in_image = next(dest for dest, src in pairs.items() if src == "examples")
    text = source.read_text()
    assert examples_in_image in text
    config = tmp_path / "faktory.toml"
    config.write_text(text.replace(examples_in_image, str(ROOT / "examples")))
    loaded = load_config(config, environ={})
    assert not loaded.embedded.enabled
    result = subprocess.run(
        [sys.executable, "-m", "faktoryd", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Hello -> consumer.hello" in result.stdout
