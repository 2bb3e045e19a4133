"""The approval page's diff base: when the planner proposes, the gateway reads what each file write replaces.

Real parts: `writ mcp` as a subprocess for the planner (official SDK client), the filesystem
server on a temporary directory, mcp-server-git on a temporary repository, the session's
Temporal dev server (proposing starts the plan's approval workflow), and a copy of the shipped
policies with one team rule that keeps everyone out of a secrets/ directory. What was captured
is read back with ``ContentStore``, as the approval page reads it.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from support.gateway import (
    FS_SERVER,
    GatewayClient,
    gateway_client,
    make_repo,
    register,
    require_upstreams,
    text_of,
    toml_list,
    toml_str,
)

from writ.attestations.audit import AuditLog
from writ.engine.core.settings import Settings, shipped_policy_dir
from writ.engine.wiring.services import open_services
from writ.plans.contents import CapturedContent, ContentStore

pytestmark = [pytest.mark.temporal, pytest.mark.usefixtures("temporal_module")]

PRINCIPALS = {"plan-bot": "planner", "exec-bot": "executor", "alice": "approver", "bob": "approver"}
OLD = "# Runbook\n\nRestart with `systemctl restart app`.\n"
NO_SECRETS = """package writ.authz

# A team's own rule: nobody reads or writes the secrets/ directory through the gateway.
deny contains reason("secrets_forbidden", "the secrets/ directory is off limits") if {
	contains(input.args.path, "/secrets/")
}
"""


@dataclass
class Env:
    root: Path
    files: Path  # the filesystem server's one allowed directory
    outside: Path  # a directory the filesystem server may not reach
    repo: Path
    config: Path
    data_dir: Path
    policy_dir: Path

    @property
    def settings(self) -> Settings:
        return Settings(home=self.data_dir, policy_dir=self.policy_dir)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    node = require_upstreams()
    root = tmp_path_factory.mktemp("contents")
    files, outside = root / "files", root / "outside"
    (files / "docs").mkdir(parents=True)
    (files / "secrets").mkdir()
    outside.mkdir()
    (files / "runbook.md").write_text(OLD)
    (files / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (files / "secrets" / "token.txt").write_text("s3cr3t\n")
    (outside / "passwd").write_text("root:x:0:0\n")
    policy_dir = root / "policies"
    shutil.copytree(shipped_policy_dir(), policy_dir, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (policy_dir / "writ" / "no_secrets.rego").write_text(NO_SECRETS)
    config = root / "etc" / "writ.toml"
    config.parent.mkdir()
    repo = make_repo(root / "repo")
    config.write_text(f"""
[gateway]
call_timeout_s = 30

[upstreams.fs]
command = {toml_str(node)}
args = {toml_list([str(FS_SERVER), str(files)])}

[upstreams.git]
command = {toml_str(sys.executable)}
args = {toml_list(["-m", "mcp_server_git", "--repository", str(repo)])}
""")
    data_dir = root / "writ-home"
    register(data_dir, PRINCIPALS, keys=True)
    return Env(root, files, outside, repo, config, data_dir, policy_dir)


@contextmanager
def planner_session(env: Env, data_dir: Path | None = None) -> Iterator[GatewayClient]:
    """`writ mcp --principal plan-bot` on the test's policies, and an agent session to it."""
    with gateway_client(env.config, "plan-bot", data_dir or env.data_dir, env.root / "gateway.stderr",
                        env={"WRIT_POLICY_DIR": str(env.policy_dir)}) as client:
        yield client


@pytest.fixture(scope="module")
def planner(env: Env) -> Iterator[GatewayClient]:
    with planner_session(env) as client:
        yield client


def propose(planner: GatewayClient, steps: list[dict[str, Any]]) -> dict[str, Any]:
    result = planner.call("writ__writ_plan_propose", {"title": "Update the docs", "rationale": "for the test",
                                                      "steps": steps})
    assert not result.is_error, text_of(result)
    data = result.structured_content or {}
    assert data["state"] == "pending"
    return data


def write(path: Path | str, content: str = "new\n") -> dict[str, Any]:
    return {"tool": "fs__write_file", "args": {"path": str(path), "content": content}}


def captured(env: Env, plan_id: str) -> dict[int, CapturedContent]:
    with open_services(env.settings) as w:
        return {c.step_index: c for c in ContentStore(w.store, audit=w.audit).for_plan(plan_id)}


def audit(env: Env) -> list[tuple[str, dict[str, Any]]]:
    with open_services(env.settings) as w:
        return [(e.kind, dict(e.payload)) for e in AuditLog(w.store).tail(100_000)]


def reads_of(env: Env, path: Path | str, since: int) -> list[dict[str, Any]]:
    """The audited decisions on reading ``path`` with the filesystem server's read tool, in entries after the
    first ``since`` (the test's own: other tests of the module read the same files in the same log)."""
    return [p for kind, p in audit(env)[since:] if kind == "decision"
            and p["input"]["tool"]["name"] == "read_text_file"
            and p["input"]["args"].get("path") == str(path)]


def test_overwriting_a_file_keeps_its_old_content_read_as_the_planner(env: Env, planner: GatewayClient) -> None:
    path = env.files / "runbook.md"
    since = len(audit(env))
    data = propose(planner, [write(path, "# Runbook\n\nRestart with `app restart`.\n")])
    row = captured(env, data["plan_id"])[0]
    assert (row.status, row.content, row.path, row.server, row.tool) == ("captured", OLD, str(path), "fs",
                                                                         "write_file")
    assert row.content_sha256 == "sha256:" + hashlib.sha256(OLD.encode()).hexdigest()
    assert data["diffs"] == [{"index": 0, "status": "captured", "reason": None}]
    [read] = reads_of(env, path, since)  # decided by policy, for the planner's own session, and logged
    assert read["input"]["principal"] == "plan-bot" and read["input"]["role"] == "planner"
    assert read["decision"]["allow"] is True
    propose_decision = next(p for k, p in audit(env)[since:] if k == "decision"
                            and p["input"]["tool"]["name"] == "writ_plan_propose")
    assert read["input"]["session"]["id"] == propose_decision["input"]["session"]["id"]
    results = [p for k, p in audit(env) if k == "tool_result"
               and p["decision_id"] == read["decision"]["decision_id"]]
    assert [r["outcome"] for r in results] == ["ok"]
    [entry] = [p for k, p in audit(env) if k == "plan_contents" and p["plan_id"] == data["plan_id"]]
    assert entry["steps"][0]["content_sha256"] == row.content_sha256


def test_each_kind_of_step_says_whether_a_diff_exists_and_why_not(env: Env, planner: GatewayClient) -> None:
    docs_glob = {"tool": "fs__write_file", "args": {"content": "hello\n"},
                 "constraints": [{"kind": "path_glob", "arg": "path", "root": str(env.files / "docs"),
                                  "glob": "*.md"}]}
    steps = [
        write(env.files / "docs" / "new-page.md"),  # 0: a new file
        write(env.outside / "passwd"),  # 1: outside the server's allowed directory
        docs_glob,  # 2: the path is chosen at run time
        {"tool": "git__git_commit", "args": {"repo_path": str(env.repo), "message": "docs"}},  # 3
        {"tool": "fs__edit_file", "args": {"path": str(env.files / "logo.png"),
                                           "edits": [{"oldText": "PNG", "newText": "GIF"}]}},  # 4: binary
        write(env.files / "secrets" / "token.txt"),  # 5: the read is denied by policy
        {"tool": "fs__create_directory", "args": {"path": str(env.files / "more")}},  # 6
    ]
    since = len(audit(env))
    data = propose(planner, steps)
    rows = captured(env, data["plan_id"])
    assert sorted(rows) == list(range(7))
    assert (rows[0].status, rows[0].reason, rows[0].content) == (
        "absent", "the file does not exist yet: the step makes a new file", None)
    assert rows[1].status == "unavailable"
    assert rows[1].reason is not None and rows[1].reason.startswith(
        "the upstream refused the read: Access denied - path outside allowed directories")
    assert (rows[2].status, rows[2].path, rows[2].reason) == (
        "unavailable", None, f"the path is chosen at run time within {env.files / 'docs'}/*.md")
    assert (rows[3].status, rows[3].server, rows[3].tool) == ("not_a_file_write", "git", "git_commit")
    assert rows[3].reason is not None and "staged diff" in rows[3].reason
    assert (rows[4].status, rows[4].reason) == ("unavailable", "binary content: the file is not UTF-8 text")
    assert rows[5].status == "unavailable"
    assert rows[5].reason == ("the read was denied by policy: denied [secrets_forbidden]: "
                              "the secrets/ directory is off limits")
    assert (rows[6].status, rows[6].path) == ("not_a_file_write", None)
    assert all(r.content is None for r in rows.values())
    assert [d["status"] for d in data["diffs"]] == [rows[i].status for i in range(7)]

    [denied] = reads_of(env, env.files / "secrets" / "token.txt", since)
    assert denied["decision"]["allow"] is False
    assert [r["code"] for r in denied["decision"]["reasons"]] == ["secrets_forbidden"]
    assert len(reads_of(env, env.outside / "passwd", since)) == 1  # allowed by policy, refused by the server
    assert reads_of(env, env.files / "docs" / "new-page.md", since)[0]["decision"]["allow"] is True


def test_the_planner_is_told_what_approvers_will_see(env: Env, planner: GatewayClient) -> None:
    result = planner.call("writ__writ_plan_propose", {"title": "Two files", "rationale": "for the test", "steps": [
        write(env.files / "runbook.md"), write(env.outside / "passwd")]})
    text = text_of(result)
    assert "for the approvers' diffs:\n  [0] its current content was captured\n  [1] no diff: the upstream " \
           "refused the read" in text


def test_a_capture_that_cannot_be_stored_leaves_the_proposal_standing(env: Env, tmp_path: Path) -> None:
    """The plan is stored before anything is read: a failed capture only means no diff, never no plan."""
    data_dir = tmp_path / "writ-home"
    register(data_dir, PRINCIPALS, keys=True)
    settings = Settings(home=data_dir, policy_dir=env.policy_dir)
    with open_services(settings) as w, w.store.engine.begin() as conn:
        conn.execute(text("DROP TABLE plan_contents"))  # the database now refuses every capture
    with planner_session(env, data_dir) as planner:
        data = propose(planner, [write(env.files / "runbook.md")])
    assert data["diffs"] == []
    with open_services(settings) as w:
        assert w.plans.get(data["plan_id"]).state.value == "pending"
        kinds = [e.kind for e in AuditLog(w.store).tail(1000)]
    assert "plan_contents" not in kinds
    assert "cannot read the captured contents of plan" in (env.root / "gateway.stderr").read_text()
