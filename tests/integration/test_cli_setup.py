"""Setting Writ up by hand, as a team does: `writ init`, the data directory, groups, `writ serve`'s start.

Every test runs the installed `writ` as a subprocess against a real database.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support.approvals import BackgroundWorker

from writ.engine.core.db import head_revision
from writ.engine.core.settings import Settings
from writ.plans.keys import PrivateKey

WRIT = Path(sys.executable).parent / "writ"


def writ(*args: str | Path, code: int | None = 0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``writ ARGS`` in a subprocess; checks the exit code unless ``code`` is None."""
    done = subprocess.run([str(WRIT), *map(str, args)], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})
    if code is not None:
        assert done.returncode == code, (args, done.stdout, done.stderr)
    return done


def one_error_line(done: subprocess.CompletedProcess[str], code: str) -> str:
    """The single ``error[code]: ...`` line on stderr (no traceback), without its prefix."""
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error[{code}]: "), done.stderr
    return lines[0].removeprefix(f"error[{code}]: ")


# -- writ init ------------------------------------------------------------------------------------


def test_init_creates_the_data_directory_and_records_the_settings(tmp_path: Path, policy_dir: Path) -> None:
    home, policies = tmp_path / "team" / ".writ", tmp_path / "policies"
    shutil.copytree(policy_dir, policies, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    out = writ("init", "--data-dir", home, "--policy-dir", policies).stdout
    assert out.startswith(f"initialised {home}: database sqlite:///{home}/writ.sqlite (schema {head_revision()} created)")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    settings = home / "settings.json"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert json.loads(settings.read_text()) == {
        "_type": "https://writ.dev/settings/v1", "policy_dir": str(policies), "database_url": None}
    # every command reads the record: no --policy-dir, no WRIT_POLICY_DIR
    assert "revision (without tests)" in writ("policy", "check", "--data-dir", home).stdout
    again = json.loads(writ("init", "--data-dir", home, "--json").stdout)
    assert again | {"settings_file": None, "instance_key": None} == {
        "data_dir": str(home), "created": False, "settings_file": None, "policy_dir": str(policies),
        "database": f"sqlite:///{home}/writ.sqlite", "schema_before": head_revision(), "schema": head_revision(),
        "changed": [], "instance_key": None}
    # the instance key (it signs webhook notices) is made once, mode 0600, apart from the database
    key = home / "instance-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert PrivateKey.load(key).key_id == again["instance_key"]
    assert f"instance key {again['instance_key'][7:19]}" in out


def test_init_again_with_another_setting_needs_reconfigure(tmp_path: Path, policy_dir: Path) -> None:
    home = tmp_path / "home"
    writ("init", "--data-dir", home)
    refused = writ("init", "--data-dir", home, "--policy-dir", tmp_path, code=1)
    assert "already initialised with other settings (policy directory (the shipped policies) -> " in one_error_line(
        refused, "settings_conflict")
    assert json.loads((home / "settings.json").read_text())["policy_dir"] is None
    changed = writ("init", "--data-dir", home, "--policy-dir", tmp_path, "--reconfigure").stdout
    assert "is already initialised" in changed and "changed: policy directory" in changed
    assert json.loads((home / "settings.json").read_text())["policy_dir"] == str(tmp_path)


def test_a_writ_variable_that_disagrees_with_the_record_is_refused(tmp_path: Path, policy_dir: Path) -> None:
    home = tmp_path / "home"
    writ("init", "--data-dir", home)
    refused = writ("principals", "list", "--data-dir", home, code=1, env={"WRIT_POLICY_DIR": str(tmp_path)})
    message = one_error_line(refused, "settings_conflict")
    assert message.startswith(f"WRIT_* settings disagree with those recorded in {home}/settings.json: policy directory")
    # the same directory, named by the variable, is no conflict
    writ("principals", "list", "--data-dir", home, env={"WRIT_POLICY_DIR": str(policy_dir)})


def test_init_refuses_a_policy_dir_that_does_not_exist_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = writ("init", "--data-dir", home, "--policy-dir", tmp_path / "nowhere", code=1)
    assert one_error_line(done, "config_invalid") == f"policy directory {tmp_path / 'nowhere'} does not exist or is not a directory"
    assert not home.exists()


# -- every other command needs an initialised data directory -------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("principals", "list"), id="principals_list"),
        pytest.param(("plan", "list"), id="plan_list"),
        pytest.param(("keys", "list"), id="keys_list"),
        pytest.param(("groups", "list"), id="groups_list"),
        pytest.param(("tokens", "list"), id="tokens_list"),
        pytest.param(("trust", "export", "-o", "root.json"), id="trust_export"),
        pytest.param(("serve", "--port", "0"), id="serve"),
    ],
)
def test_a_command_on_a_missing_data_dir_says_store_missing_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    home = tmp_path / ".wirt"  # a typo of .writ
    done = writ(*command, "--data-dir", home, code=1)
    assert one_error_line(done, "store_missing") == f"no Writ data directory at {home}: run 'writ init --data-dir {home}'"
    assert done.stdout == ""
    assert not home.exists()


def test_json_errors_are_json_on_stdout_too(tmp_path: Path) -> None:
    # a script that asked for --json parses stdout: an error is an object it can read, and stderr keeps the line
    home = tmp_path / ".wirt"
    done = writ("plan", "list", "--json", "--data-dir", home, code=1)
    assert json.loads(done.stdout) == {"ok": False, "code": "store_missing",
                                       "message": f"no Writ data directory at {home}: run 'writ init --data-dir {home}'"}
    assert one_error_line(done, "store_missing")
    assert not home.exists()


def test_audit_verify_on_a_missing_data_dir_exits_2(tmp_path: Path) -> None:
    home = tmp_path / ".wirt"
    done = writ("audit", "verify", "--data-dir", home, code=2)
    assert one_error_line(done, "store_missing").startswith(f"no Writ data directory at {home}")
    assert not home.exists()


def test_a_missing_sqlite_file_is_not_recreated(tmp_path: Path) -> None:
    home = tmp_path / "home"
    writ("init", "--data-dir", home)
    (home / "writ.sqlite").unlink()
    done = writ("principals", "add", "alice", "--role", "approver", "--data-dir", home, code=1)
    assert one_error_line(done, "store_missing") == (
        f"no Writ database at {home}/writ.sqlite: run 'writ init --data-dir {home}'")
    assert not (home / "writ.sqlite").exists()


@pytest.mark.postgres
def test_a_postgres_database_without_writs_schema_is_refused(tmp_path: Path, pg_schema_url: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"WRIT_DATABASE_URL": pg_schema_url}
    done = writ("principals", "list", "--data-dir", home, code=1, env=env)
    assert one_error_line(done, "store_missing").endswith(f"holds no Writ schema: run 'writ init --data-dir {home}'")
    writ("init", "--data-dir", home, env=env)
    assert json.loads((home / "settings.json").read_text())["database_url"] == pg_schema_url
    assert "no principals" in writ("principals", "list", "--data-dir", home).stdout  # recorded: no variable needed


# -- --data-dir before the subcommand -------------------------------------------------------------


def test_data_dir_before_the_subcommand(tmp_path: Path) -> None:
    home = tmp_path / "home"
    writ("--data-dir", home, "init")
    writ("--data-dir", home, "principals", "add", "alice", "--role", "approver")
    assert "alice" in writ("principals", "list", "--data-dir", home).stdout
    assert "alice" in writ("--data-dir", home, "principals", "list", "--data-dir", home).stdout
    clash = writ("--data-dir", home, "principals", "list", "--data-dir", tmp_path / "other", code=1)
    assert one_error_line(clash, "input_invalid").startswith("--data-dir given twice")


# -- groups in the trust store --------------------------------------------------------------------


def test_groups_add_list_remove(tmp_path: Path) -> None:
    home = tmp_path / "home"
    writ("init", "--data-dir", home)
    writ("principals", "add", "dave", "--role", "approver", "--data-dir", home)
    added = writ("groups", "add", "code-owners", "dave", "--data-dir", home).stdout
    assert added == "dave is now in code-owners (members: alice, bob, dave)\n"
    listed = writ("groups", "list", "--data-dir", home).stdout.splitlines()
    assert listed == ["code-owners  alice (policy data), bob (policy data), dave", "security     carol (policy data)"]
    doc = json.loads(writ("groups", "list", "--json", "--data-dir", home).stdout)
    assert doc["code-owners"][2] == {"principal": "dave", "sources": ["trust_store"]}
    assert "code-owners" in writ("principals", "list", "--data-dir", home).stdout
    twice = writ("groups", "add", "code-owners", "dave", "--data-dir", home, code=1)
    assert one_error_line(twice, "group_member_exists") == "'dave' is already in group 'code-owners'"
    nobody = writ("groups", "add", "code-owners", "nobody", "--data-dir", home, code=1)
    assert one_error_line(nobody, "principal_not_found").startswith("no principal 'nobody'")
    writ("groups", "remove", "code-owners", "dave", "--data-dir", home)
    assert "dave" not in writ("groups", "list", "--data-dir", home).stdout
    policy_member = writ("groups", "remove", "code-owners", "alice", "--data-dir", home, code=1)
    assert "through the policy data" in one_error_line(policy_member, "group_member_not_found")
    events = [json.loads(line)["payload"] for line in writ("audit", "list", "--json", "--data-dir", home).stdout.splitlines()]
    assert [e["event"] for e in events if e.get("group")] == ["group_member_added", "group_member_removed"]


PLAN = {
    "title": "Fix the README", "rationale": "typo", "planner": "plan-bot", "expires_in": "2h",
    "steps": [{"server": "fs", "tool": "write_file",
               "definition_digest": "sha256:c63cb2d88d68c874d26d844598029cf90fdf300c4552ca8d4a3cd88b92724291",
               "args": {"path": "/srv/repo/README.md", "content": "# Writ\n"}}],
}


def test_an_approval_counts_when_the_group_exists_only_in_the_trust_store(tmp_path: Path, policy_dir: Path,
                                                                         temporal_env: str) -> None:
    policies, home = tmp_path / "policies", tmp_path / "home"
    shutil.copytree(policy_dir, policies, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (policies / "writ" / "approval_rules.json").write_text(json.dumps(
        {"default": {"quorum": 1, "max_ttl_seconds": 86400, "required_groups": ["release-managers"]}}))
    writ("init", "--data-dir", home, "--policy-dir", policies)
    keys = {}
    for name, role in [("plan-bot", "planner"), ("dave", "approver"), ("erin", "approver")]:
        writ("principals", "add", name, "--role", role, "--data-dir", home)
        out = writ("keys", "new", "--principal", name, "--data-dir", home).stdout
        keys[name] = re.search(r"private key written to (\S+)", out).group(1)  # type: ignore[union-attr]
    writ("groups", "add", "release-managers", "dave", "--data-dir", home)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(PLAN))
    plan_id = writ("plan", "sign", plan_file, "--key", keys["plan-bot"], "-o", tmp_path / "plan.signed.json",
                   "--data-dir", home).stdout.strip()
    writ("plan", "submit", tmp_path / "plan.signed.json", "--data-dir", home)
    with BackgroundWorker(Settings(home=home)):
        erin = writ("approve", plan_id, "--key", keys["erin"], "--data-dir", home, code=1)
        assert "'erin' is in none of the required groups ['release-managers']" in one_error_line(
            erin, "approval_not_in_required_group")
        short = plan_id.removeprefix("sha256:")[:12]
        assert short in writ("plan", "list", "--state", "pending", "--data-dir", home).stdout
        writ("approve", plan_id, "--key", keys["dave"], "--data-dir", home)
    assert short in writ("plan", "list", "--state", "approved", "--data-dir", home).stdout
    root = tmp_path / "root.json"
    writ("trust", "export", "-o", root, "--data-dir", home)
    assert json.loads(root.read_text())["trust"]["groups"]["release-managers"] == ["dave"]


# -- writ serve's start ---------------------------------------------------------------------------


def test_serve_on_a_busy_port_is_one_error_line_and_never_announces(tmp_path: Path) -> None:
    home = tmp_path / "home"
    writ("init", "--data-dir", home)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = writ("serve", "--port", port, "--data-dir", home, code=1)
    assert one_error_line(done, "port_in_use") == (
        f"cannot listen on 127.0.0.1:{port}: the port is in use by another process; stop it or choose another --port")
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--port", "70000"), "--port 70000 is not a TCP port: choose one from 1 to 65535", id="port_too_big"),
        pytest.param(("--port", "-1"), "--port -1 is not a TCP port", id="port_negative"),
        pytest.param(("--host", "no-such-host.invalid"), "--host 'no-such-host.invalid' is not an address",
                     id="unknown_host"),
    ],
)
def test_serve_on_a_bad_address_is_one_error_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    home = tmp_path / "home"
    writ("init", "--data-dir", home)
    done = writ("serve", *args, "--data-dir", home, code=1)
    assert one_error_line(done, "config_invalid").startswith(message)
    assert done.stdout == ""


def get_when_up(url: str, timeout_s: float = 60) -> bytes:
    """GET ``url``, retrying while the server is still starting (it listens once its app started)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return bytes(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serve_on_port_0_announces_the_port_it_bound(tmp_path: Path, temporal_env: str) -> None:
    home = tmp_path / "home"
    writ("init", "--data-dir", home)
    proc = subprocess.Popen([str(WRIT), "serve", "--port", "0", "--data-dir", str(home)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", lines[3]).group(1)  # type: ignore[union-attr]
        assert lines[0] == f"writ: data directory {home}\n"
        assert lines[2].startswith(f"writ: temporal {os.environ['WRIT_TEMPORAL_ADDRESS']} ")
        assert json.loads(get_when_up(f"{url}/healthz")) == {"status": "ok"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- fast start -----------------------------------------------------------------------------------

HEAVY = ("mcp", "fastapi", "sqlalchemy", "regorus", "uvicorn", "alembic")


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--version"], id="version"),
        pytest.param(["init", "--help"], id="init_help"),
        pytest.param(["groups", "--help"], id="groups_help"),
        pytest.param(["serve", "--help"], id="serve_help"),
    ],
)
def test_the_cli_starts_without_the_heavy_layers(argv: list[str]) -> None:
    probe = (
        "import sys\n"
        "from writ.engine.cli.main import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr


def test_a_command_on_an_up_to_date_database_imports_neither_alembic_nor_the_policy_engine(tmp_path: Path) -> None:
    home = tmp_path / "home"
    writ("init", "--data-dir", home)
    probe = (
        "import sys\n"
        "from writ.engine.cli.main import main\n"
        f"try:\n    main(['plan', 'list', '--data-dir', {str(home)!r}])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('alembic', 'regorus', 'mcp', 'fastapi') if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "no plans\n" and done.stderr.strip().splitlines()[-1] == "[]", done.stderr


def test_the_newest_revision_is_read_from_the_migrations_as_alembic_reads_it() -> None:
    from alembic.script import ScriptDirectory

    from writ.engine.core.db import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()

