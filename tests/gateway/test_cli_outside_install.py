"""`phigate` run where there is no installation: one line naming PHIGATE_DATA_DIR, exit status 2, nothing created.

Every command is found by walking the CLI itself, so a command added later is held to the same rule
unless it is listed here as one that needs no installation (and why).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import app

# Commands that work without an installation, and why.
NEEDS_NO_INSTALLATION = {
    ("init",): "creates the installation",
    ("demo",): "creates the installation it seeds (development only)",
    ("keys", "init"): "creates the keyring and the installation around it",
    ("config", "show"): "prints the effective configuration: the diagnosis of exactly this mistake",
    ("audit", "verify-export"): "offline verifier: the public key and the file only",
    ("certificate", "verify"): "offline verifier: the public key and the file only",
}


def _commands(group, prefix: tuple[str, ...] = ()):
    # Typer carries its own copy of click: groups and parameters are recognised by what they have.
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def _placeholder_args(command) -> list[str]:
    """Values for the required parameters, of the right type, so that only the installation check can refuse."""

    def value(param):
        # By click's name of the parameter type: typer versions differ in their own descriptors, and some
        # carry a copy of click, so neither is a stable thing to test against.
        kind = param.type
        if kind.name == "choice":
            return str(kind.choices[0])
        return {"integer": "1", "int": "1", "float": "1", "path": "out.json"}.get(kind.name, "x")

    args = []
    for param in command.params:
        if not param.required:
            continue
        if param.param_type_name == "argument":
            args.append(value(param))
        else:
            args += [param.opts[0], value(param)]
    return args


# Values these commands check before they look for the installation (a bad one is refused first, as it should be).
VALID = {
    ("org", "create"): ["x", "--kind", "practice"],
    ("user", "create"): ["x", "--org", "x", "--role", "biller", "--name", "x", "--email", "x"],
    ("user", "set-role"): ["x", "biller"],
}


ALL = sorted(_commands(typer.main.get_command(app)), key=lambda c: c[0])
NEEDING = [(path, command) for path, command in ALL if path not in NEEDS_NO_INSTALLATION]


def test_the_walk_finds_every_command():
    paths = {path for path, _ in ALL}
    assert {
        ("org", "list"),
        ("audit", "public-key"),
        ("serve",),
        ("fsck",),
        ("offboard",),
        ("retention", "policy", "set"),
    } <= paths
    assert set(NEEDS_NO_INSTALLATION) <= paths  # the exceptions name real commands
    assert len(NEEDING) > 25


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """An empty working directory and no PHIGATE_* in the environment."""
    for key in list(os.environ):
        if key.startswith("PHIGATE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("path,command", NEEDING, ids=[" ".join(p) for p, _ in NEEDING])
def test_every_command_refuses_in_one_line_and_creates_nothing(nowhere, path, command):
    args = [*path, *(VALID.get(path) or _placeholder_args(command))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (args, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "PHIGATE_DATA_DIR" in lines[0] and "does not exist" in lines[0], (args, result.stderr)
    assert "Traceback" not in result.output and result.stdout == ""
    assert list(nowhere.iterdir()) == []  # no ./var, no database file, no keyring


def _phigate(*args, cwd, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHIGATE_")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_audit_public_key_outside_an_install_through_the_real_entry_point(tmp_path):
    r = _phigate("audit", "public-key", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    [line] = r.stderr.splitlines()
    assert line.startswith("error: no PHI Gate installation") and "PHIGATE_DATA_DIR" in line
    assert list(tmp_path.iterdir()) == []


def test_a_data_dir_that_is_not_an_installation(tmp_path):
    """A directory that exists but holds no database, or a database without the schema: still one line."""
    (tmp_path / "var").mkdir()
    r = _phigate("org", "list", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "no PHI Gate database" in r.stderr
    assert list((tmp_path / "var").iterdir()) == []
    (tmp_path / "var" / "phigate.db").touch()
    (tmp_path / "var" / "keys").mkdir()
    r = _phigate("org", "list", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.splitlines() == [
        "error: the database schema is not current: run `phigate db upgrade` (or `phigate init`)"
    ]


def test_init_creates_the_installation_that_other_commands_then_use(tmp_path):
    r = _phigate("init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "var" / "phigate.db").is_file()
    r = _phigate("org", "list", cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    # A keyring that is not one (emptied, wrong directory mounted): one line, not a traceback.
    shutil.rmtree(tmp_path / "var" / "keys")
    (tmp_path / "var" / "keys").mkdir()
    r = _phigate("audit", "public-key", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    [line] = r.stderr.splitlines()
    assert line.startswith("error: the key provider is unavailable (ProviderUnavailable")
