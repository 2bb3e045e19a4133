"""Commands that cannot start say why in one line (``error[code]: ...``), exit non-zero, print nothing else.

Run as a user runs them: the ``writ`` command in a subprocess, on a real data directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.gateway import toml_str

from writ.engine.core.settings import Settings

WRIT = [sys.executable, "-c", "from writ.engine.cli.main import main; main()"]


def run(settings: Settings, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WRIT, *map(str, args), "--data-dir", str(settings.home)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def one_error_line(result: subprocess.CompletedProcess[str], code: str) -> str:
    assert result.returncode != 0, result
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error[{code}]: "), result.stderr
    return lines[0]


@pytest.fixture
def home(settings: Settings, tmp_path: Path) -> Settings:
    """An initialised data directory with a planner and an executor, each with a key in <data dir>/keys."""
    from support.gateway import register

    from writ.engine.wiring.datadir import init_data_dir

    init_data_dir(settings)
    register(settings.home, {"plan-bot": "planner", "exec-bot": "executor"}, keys=True)
    return settings


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A gateway config whose one upstream would fail to start: nothing may get as far as starting it."""
    path = tmp_path / "config" / "writ.toml"
    path.parent.mkdir()
    path.write_text(f"[upstreams.never]\ncommand = {toml_str(tmp_path / 'never-started')}\n")
    return path


# -- writ mcp --key --------------------------------------------------------------------------------------


def test_mcp_with_a_key_file_that_does_not_exist(home: Settings, config: Path, tmp_path: Path) -> None:
    result = run(home, "mcp", "--principal", "plan-bot", "--config", config, "--key", tmp_path / "nowhere.pem")
    line = one_error_line(result, "key_file_unreadable")
    assert line == f"error[key_file_unreadable]: cannot read private key {tmp_path / 'nowhere.pem'}: " \
                   "No such file or directory"
    assert result.returncode == 1


def test_mcp_with_the_key_of_another_principal(home: Settings, config: Path) -> None:
    exec_key = next((home.home / "keys").glob("exec-bot-*.pem"))
    line = one_error_line(run(home, "mcp", "--principal", "plan-bot", "--config", config, "--key", exec_key),
                          "signing_key_untrusted")
    assert "is not a valid trusted key of 'plan-bot'" in line


def test_mcp_with_a_key_for_a_principal_who_signs_no_plans(home: Settings, config: Path) -> None:
    exec_key = next((home.home / "keys").glob("exec-bot-*.pem"))
    line = one_error_line(run(home, "mcp", "--principal", "exec-bot", "--config", config, "--key", exec_key),
                          "input_invalid")
    assert line == ("error[input_invalid]: --key is the key a planner signs plans with; 'exec-bot' has role "
                    "executor, not planner")


# -- writ audit verify --expected-head ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        pytest.param("9a1f0c", id="short_hex"),
        pytest.param("sha256:" + "a" * 63, id="one_digit_short"),
        pytest.param("sha256:" + "A" * 64, id="upper_case"),
        pytest.param("sha512:" + "a" * 64, id="other_algorithm"),
        pytest.param("sha256:9a1f0c...", id="copied_with_an_ellipsis"),
    ],
)
def test_audit_verify_with_an_expected_head_that_is_not_a_hash(home: Settings, head: str) -> None:
    result = run(home, "audit", "verify", "--expected-head", head)
    line = one_error_line(result, "input_invalid")
    assert line.startswith(f"error[input_invalid]: --expected-head {head!r} is not an entry hash: sha256: and 64 ")
    assert result.returncode == 2  # as for a log that cannot be read: 1 means a bad entry


def test_audit_verify_as_json_gives_a_head_to_check_against_later(home: Settings) -> None:
    first = run(home, "audit", "verify", "--json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["ok"] is True and doc["entries"] >= 4 and doc["problem"] is None and doc["first_bad_seq"] is None
    again = run(home, "audit", "verify", "--expected-head", doc["head"], "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["head"] == doc["head"]
    unknown = run(home, "audit", "verify", "--expected-head", "sha256:" + "1" * 64, "--json")  # never a head here
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout)["ok"] is False
