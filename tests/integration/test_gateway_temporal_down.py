"""The gateway when Temporal goes away: proposing fails closed, and plans already approved still run.

Real parts: Temporal's dev server of this test (killed mid-test with SIGKILL), `writ mcp` gateways
as subprocesses, the filesystem MCP server, and approvals sent as Updates to a worker on the data
directory's stores.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from support.approvals import run
from support.gateway import (
    FS_SERVER,
    error_code,
    gateway_client,
    register,
    require_upstreams,
    text_of,
    toml_list,
    toml_str,
)

from writ.engine.core.settings import Settings
from writ.engine.wiring.services import open_services
from writ.plans.keys import PrivateKey
from writ.plans.lifecycle import PlanState
from writ.plans.statements import sign_approval
from writ.workflows.approval.client import ApprovalClient
from writ.workflows.approval.devserver import DevServer
from writ.workflows.approval.worker import approval_worker

pytestmark = pytest.mark.temporal

PRINCIPALS = {"plan-bot": "planner", "exec-bot": "executor", "alice": "approver", "bob": "approver"}


def test_proposing_fails_closed_when_temporal_dies_and_approved_plans_still_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from support.gateway import free_port

    node = require_upstreams()
    files = tmp_path / "files"
    files.mkdir()
    data_dir = tmp_path / "writ-home"
    config = tmp_path / "etc" / "writ.toml"
    config.parent.mkdir()
    config.write_text(f"[upstreams.fs]\ncommand = {toml_str(node)}\nargs = {toml_list([str(FS_SERVER), str(files)])}\n")
    keys = register(data_dir, PRINCIPALS, keys=True)
    server = DevServer(tmp_path / "temporal", port=free_port())
    (tmp_path / "temporal").mkdir()
    server.start()
    monkeypatch.setenv("WRIT_TEMPORAL_ADDRESS", server.address)
    monkeypatch.setenv("WRIT_TEMPORAL_TASK_QUEUE", "writ-down-test")
    settings = Settings(home=data_dir)
    stderr = tmp_path / "gateway.stderr"
    try:
        with (gateway_client(config, "plan-bot", data_dir, stderr) as planner,
              gateway_client(config, "exec-bot", data_dir, stderr) as executor,
              open_services(settings) as stores):
            step = {"tool": "fs__write_file", "args": {"path": str(files / "a.txt"), "content": "approved\n"}}
            proposed = planner.call("writ__writ_plan_propose", {"title": "Write a.txt", "rationale": "test",
                                                                "steps": [step]})
            assert not proposed.is_error, text_of(proposed)
            plan_id = str((proposed.structured_content or {})["plan_id"])

            async def approve_both() -> str:
                client = await ApprovalClient.connect(settings, audit=stores.audit)
                async with approval_worker(client.client, stores):
                    for name in ("alice", "bob"):
                        envelope = sign_approval(plan_id, PrivateKey.load(keys[name]), approver=name).to_json()
                        count = await client.decide(plan_id, envelope, "approve")
                    return count.state

            assert run(approve_both()) == "approved"

            os.killpg(server.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
            server.process.wait()  # type: ignore[union-attr]

            # No Temporal: a new proposal is refused, and nothing is stored.
            refused = planner.call("writ__writ_plan_propose", {"title": "Write b.txt", "rationale": "test", "steps": [
                {"tool": "fs__write_file", "args": {"path": str(files / "b.txt"), "content": "never\n"}}]})
            assert refused.is_error and error_code(refused) == "workflow_unavailable", text_of(refused)
            assert "cannot reach Temporal" in text_of(refused)
            assert [p.id for p in stores.plans.list_plans()] == [plan_id]

            # The plan approved before still runs: the gateway does not ask Temporal to decide.
            began = executor.call("writ__writ_plan_begin", {"plan_id": plan_id})
            assert not began.is_error, text_of(began)
            wrote = executor.call("fs__write_file", step["args"])
            assert not wrote.is_error, text_of(wrote)
            assert (files / "a.txt").read_text() == "approved\n"
            finished = executor.call("writ__writ_plan_finish", {"outcome": "completed"})
            assert not finished.is_error, text_of(finished)
            assert stores.plans.get(plan_id).state is PlanState.COMPLETED
    finally:
        server.stop()

