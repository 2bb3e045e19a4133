"""A newcomer sets up a team from the README and ``--help`` alone: the CLI as a subprocess, a real database,
real upstream MCP servers, and never a traceback or a silently empty store.

The story: a data directory is initialised; a planner, an executor and two approvers are added, the
approvers put in the group the approval policy requires (in the trust store only: the shipped
policy data does not name them); keys are made; the upstream tools are listed with their classes
and digests; a plan is written by hand, signed, submitted, verified while pending (not VERIFIED),
approved by both, and verified again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.gateway import make_repo, require_upstreams, toml_list, toml_str

WRIT = Path(sys.executable).with_name("writ")


class Cli:
    """``writ`` run as a user runs it; every run is checked for tracebacks and its exit code."""

    def __init__(self, data: Path, cwd: Path) -> None:
        self.data = data
        self.cwd = cwd
        self.env = {**os.environ, "PATH": f"{WRIT.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.pop("WRIT_HOME", None)

    def __call__(self, *args: str | Path, code: int = 0, data_dir: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(WRIT), *(["--data-dir", str(self.data)] if data_dir else []), *map(str, args)]
        run = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=180)
        shown = f"$ {' '.join(argv)}\n{run.stdout}\n{run.stderr}"
        assert "Traceback" not in run.stdout + run.stderr, shown
        assert run.returncode == code, shown
        return run


def test_newcomer_sets_up_a_team_signs_and_approves_a_plan_by_hand(tmp_path: Path, temporal_env: str) -> None:
    require_upstreams()
    home = tmp_path / "team"
    home.mkdir()
    writ = Cli(home / ".writ", home)

    # A typo in the data directory is refused, and nothing is created in its place.
    typo = writ("principals", "list", "--data-dir", home / ".wirt", code=1, data_dir=False)
    assert "error[store_missing]" in typo.stderr and "writ init" in typo.stderr
    assert not (home / ".wirt").exists()

    writ("init")
    # Approvals go through Temporal: a worker runs beside the CLI, as `writ serve` (or `writ worker`) would.
    worker = subprocess.Popen([str(WRIT), "worker", "--data-dir", str(home / ".writ")], cwd=home, env=writ.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _story(writ, home, tmp_path)
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0, "writ worker did not stop cleanly on SIGTERM"


def _story(writ: Cli, home: Path, tmp_path: Path) -> None:
    for name, role in [("plan-bot", "planner"), ("exec-bot", "executor"), ("dana", "approver"), ("erin", "approver")]:
        writ("principals", "add", name, "--role", role)
    for approver in ("dana", "erin"):
        writ("groups", "add", "code-owners", approver)
    groups = json.loads(writ("groups", "list", "--json").stdout)
    assert "dana" in json.dumps(groups) and "erin" in json.dumps(groups)

    keys = tmp_path / "keys"  # private keys outside the data directory and the agents' workspace
    keys.mkdir(mode=0o700)
    for name in ("plan-bot", "dana", "erin"):
        writ("keys", "new", "--principal", name, "--out", keys / f"{name}.pem")

    repo = make_repo(tmp_path / "repo")
    config = home / "writ.toml"
    config.write_text(
        "[upstreams.git]\n"
        f"command = {toml_str(sys.executable)}\n"
        f"args = {toml_list(['-m', 'mcp_server_git', '--repository', str(repo)])}\n"
    )
    tools = json.loads(writ("tools", "list", "--config", config, "--json").stdout)["tools"]
    commit = next(t for t in tools if t["name"] == "git__git_commit")
    assert commit["class"] == "write"
    assert next(t for t in tools if t["name"] == "git__git_status")["class"] == "read"

    plan_file = home / "plan.json"
    plan_file.write_text(json.dumps({
        "title": "Commit the README change",
        "rationale": "The staged README edit is reviewed.",
        "planner": "plan-bot",
        "steps": [{"server": "git", "tool": "git_commit", "definition_digest": commit["definition_digest"],
                   "args": {"repo_path": str(repo), "message": "Update the README"}}],
    }))
    signed = home / "plan.signed.json"
    plan_id = writ("plan", "sign", plan_file, "--key", keys / "plan-bot.pem", "--config", config,
                   "-o", signed).stdout.strip()
    assert plan_id.startswith("sha256:")
    writ("plan", "submit", signed)

    pending = json.loads(writ("plan", "verify", plan_id, "--json", code=3).stdout)
    assert (pending["state"], pending["verdict"]) == ("pending", "not_approved")
    assert "VERIFIED" not in writ("plan", "verify", plan_id, code=3).stdout.replace("NOT VERIFIED", "")

    first = writ("approve", plan_id, "--key", keys / "dana.pem", "--comment", "looks right")
    assert "1/2" in first.stdout
    second = writ("approve", plan_id, "--key", keys / "erin.pem")
    assert "2/2" in second.stdout

    approved = json.loads(writ("plan", "verify", plan_id, "--json").stdout)
    assert (approved["state"], approved["verdict"]) == ("approved", "verified")
    listed = json.loads(writ("plan", "list", "--json").stdout)
    assert [p["state"] for p in listed if p["id"] == plan_id] == ["approved"]
