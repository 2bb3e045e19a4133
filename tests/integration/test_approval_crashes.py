"""The approval workflow when its parts crash, run twice, or are missing: real processes, real signals.

Each test starts Writ as its users do (``writ worker``, ``writ serve``, ``writ approve``,
``writ plan submit`` as subprocesses, helpers in tests/support/processes.py), kills or stops
them with real signals, and checks what an approver and an auditor rely on: the quorum still
completes, nothing is counted twice, timers still fire, and no ``temporal`` process outlives
the ``writ serve`` that started it. The shipped policy asks two approvals including a code
owner (alice or bob) for an fs plan.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support.approvals import World, approval_world, run
from support.gateway import free_port
from support.processes import WritProcess, gone_within, kill_leftovers, pids_with, writ
from temporalio.api.enums.v1 import EventType

from writ.engine.core.settings import Settings
from writ.plans.lifecycle import PlanState
from writ.plans.records import PlanRecord
from writ.workflows.approval.client import ApprovalClient
from writ.workflows.approval.devserver import DB_FILE, DevServer

pytestmark = pytest.mark.temporal

WORKER_READY = r"writ: worker on task queue"
LISTENING = r"writ: listening on http://127\.0\.0\.1:(\d+)"
DEF = "sha256:" + "ab" * 32


@pytest.fixture
def world(tmp_path: Path, temporal_env: str) -> Iterator[World]:
    with approval_world(tmp_path, temporal_env) as w:
        yield w


async def _decide(world: World, record: PlanRecord, who: str, *, start: bool = False) -> str:
    client = await ApprovalClient.connect(world.settings)
    if start:
        await client.start(record)
    return (await client.decide(record.id, world.approval(record.id, who), "approve")).summary


async def _status(world: World, plan_id: str) -> Any:
    return await (await ApprovalClient.connect(world.settings)).status(plan_id)


def _wait_until(what: str, check: Any, timeout: float = 45.0) -> None:
    """Poll ``check()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(0.2)


# -- 1. the worker dies between two approvals -----------------------------------------------------


def test_worker_killed_between_first_and_second_approval_counts_each_once(world: World, tmp_path: Path) -> None:
    record = world.submit()
    worker_args: list[str | Path] = ["worker", "--data-dir", world.settings.home]

    with WritProcess(worker_args, tmp_path / "worker-1.log") as first:
        first.wait_for(WORKER_READY)
        assert run(_decide(world, record, "alice", start=True)) == "1/2 approvals (alice); missing: 1 more approval"
        assert first.kill() == -signal.SIGKILL

    with WritProcess(worker_args, tmp_path / "worker-2.log") as second:
        second.wait_for(WORKER_READY)
        assert run(_decide(world, record, "bob")) == "2/2 approvals (alice, bob); approved"
        status = run(_status(world, record.id))

    assert world.services.plans.get(record.id).state is PlanState.APPROVED
    assert [a.approver for a in world.services.plans.approvals(record.id)] == ["alice", "bob"]
    assert [e["approver"] for e in world.audit("approval")] == ["alice", "bob"]
    assert status.state == "approved"
    assert [d.approver for d in status.decisions] == ["alice", "bob"]
    assert [e["event"] for e in world.audit("workflow")].count("started") == 1


# -- 2. the dev server dies and comes back on its database --------------------------------------


def test_dev_server_killed_and_restarted_keeps_workflows_and_timers(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    port, state = free_port(), tmp_path / "temporal-state"
    state.mkdir()
    address, queue = f"127.0.0.1:{port}", f"writ-crash-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("WRIT_TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("WRIT_TEMPORAL_TASK_QUEUE", queue)
    server = DevServer(state, port=port)
    try:
        server.start()
        with approval_world(tmp_path, queue, temporal_address=address) as world, \
                WritProcess(["worker", "--data-dir", world.settings.home], tmp_path / "worker.log") as worker:
            worker.wait_for(WORKER_READY)
            quorum = world.submit("Approved across the crash")
            expiring = world.submit("Expires across the crash", ttl=timedelta(seconds=12))
            run(_start(world, expiring))
            assert run(_decide(world, quorum, "alice", start=True)).startswith("1/2")

            assert "expired" not in _events(world, expiring.id), "expired before the crash: the test proves nothing"
            assert server.process is not None
            _kill_group(server.process.pid)
            server.process.wait(10)
            server = DevServer(state, port=port)  # the same --db-filename and port
            server.start()

            assert run(_decide(world, quorum, "bob")) == "2/2 approvals (alice, bob); approved"
            _wait_until("the expiry timer of the plan started before the crash",
                        lambda: _events(world, expiring.id).count("expired") == 1)
            assert worker.process is not None and worker.process.poll() is None, worker.output()

        assert world.services.plans.get(quorum.id).state is PlanState.APPROVED
        assert world.services.plans.get(expiring.id).state is PlanState.EXPIRED
        assert [e["approver"] for e in world.audit("approval")] == ["alice", "bob"]
    finally:
        server.stop()
        kill_leftovers(str(state / DB_FILE))


async def _start(world: World, record: PlanRecord) -> bool:
    return await (await ApprovalClient.connect(world.settings)).start(record)


def _events(world: World, plan_id: str) -> list[str]:
    return [e["event"] for e in world.audit("workflow") if e["plan_id"] == plan_id]


def _kill_group(pid: int) -> None:
    os.killpg(pid, signal.SIGKILL)


# -- CLI helpers: a team and its plans, as a user makes them --------------------------------------


def _team(home: Path) -> dict[str, Path]:
    """plan-bot (planner, key in <home>/keys), alice and bob (code owners, keys in $XDG_CONFIG_HOME/writ/keys)."""
    keys = {}
    for name, role in (("plan-bot", "planner"), ("alice", "approver"), ("bob", "approver")):
        writ("principals", "add", name, "--role", role, "--data-dir", home)
        made = writ("keys", "new", "--principal", name, "--data-dir", home).stdout
        found = re.search(r"private key written to (\S+) \(mode 0600\)", made)
        assert found, made
        keys[name] = Path(found.group(1))
    return keys


def _sign(home: Path, planner_key: Path, directory: Path, title: str) -> tuple[str, Path]:
    """``writ plan sign`` of a one-step fs plan titled ``title``: its id and its envelope file."""
    slug = re.sub(r"\W+", "-", title.lower())
    source = directory / f"{slug}.json"
    source.write_text(json.dumps({
        "title": title, "rationale": "for the crash tests", "planner": "plan-bot", "expires_in": "1h",
        "steps": [{"server": "fs", "tool": "write_file", "definition_digest": DEF,
                   "args": {"path": "/srv/notes.txt", "content": title}}],
    }))
    plan_id = writ("plan", "sign", source, "--key", planner_key, "--data-dir", home).stdout.strip()
    return plan_id, directory / f"{slug}.signed.json"


def _propose(home: Path, keys: dict[str, Path], directory: Path, title: str) -> str:
    """Sign and ``writ plan submit`` a plan through ``home``; its id."""
    plan_id, envelope = _sign(home, keys["plan-bot"], directory, title)
    submitted = writ("plan", "submit", envelope, "--data-dir", home).stdout
    assert submitted.startswith(f"plan {plan_id} pending: {title}"), submitted
    return plan_id


def _approve(home: Path, plan_id: str, key: Path) -> str:
    """``writ approve`` through ``home``: the count line it prints."""
    return writ("approve", plan_id, "--key", key, "--data-dir", home).stdout.strip().splitlines()[-1]


async def _activity_pids(home: Path, *plan_ids: str) -> list[set[int]]:
    """For each plan, the pids of the workers that ran its activities (a worker's identity is ``pid@host``).

    Activities run by the server's task queue show as ACTIVITY_TASK_STARTED; ``record_decision`` is a
    local activity, run inside a workflow task: those show as WORKFLOW_TASK_STARTED.
    """
    client = await ApprovalClient.connect(Settings(home=home))
    found = []
    for plan_id in plan_ids:
        history = await client.client.get_workflow_handle(client.workflow_id(plan_id)).fetch_history()
        pids = set()
        for e in history.events:
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                pids.add(int(e.activity_task_started_event_attributes.identity.split("@", 1)[0]))
            elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                pids.add(int(e.workflow_task_started_event_attributes.identity.split("@", 1)[0]))
        found.append(pids)
    return found


# -- 3. two `writ serve` on one PostgreSQL and one Temporal ----------------------------------------


@pytest.mark.postgres
def test_two_serves_on_one_database_share_the_workflows_and_either_finishes_alone(
        tmp_path: Path, temporal_env: str, pg_schema_url: str) -> None:
    homes = [tmp_path / "serve-a", tmp_path / "serve-b"]
    for home in homes:
        writ("init", "--data-dir", home, "--database-url", pg_schema_url)
    keys = _team(homes[0])
    a, b = (WritProcess(["serve", "--port", "0", "--data-dir", home], tmp_path / f"{home.name}.log")
            for home in homes)
    try:
        for serve in (a.start(), b.start()):
            serve.wait_for(LISTENING)
            assert f"(namespace default, task queue {temporal_env})" in serve.output()
        first = _propose(homes[0], keys, tmp_path, "Through either serve")
        assert _approve(homes[0], first, keys["alice"]) == "1/2 approvals (alice); missing: 1 more approval"
        assert _approve(homes[1], first, keys["bob"]) == "2/2 approvals (alice, bob); approved"
        second = _propose(homes[1], keys, tmp_path, "Finished by the serve left")

        assert a.terminate() == 0, a.output()
        assert _approve(homes[0], second, keys["bob"]) == "1/2 approvals (bob); missing: 1 more approval"
        assert _approve(homes[1], second, keys["alice"]) == "2/2 approvals (bob, alice); approved"

        first_ran_on, second_ran_on = run(_activity_pids(homes[1], first, second))
        listed = json.loads(writ("plan", "list", "--json", "--data-dir", homes[1]).stdout)
        assert b.terminate() == 0, b.output()
    finally:
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)

    assert {p["id"]: p["state"] for p in listed} == {first: "approved", second: "approved"}
    assert first_ran_on and first_ran_on <= {a.pid, b.pid}  # either serve's worker, Temporal chose
    # the decisions on the second plan were sent after serve A stopped: serve B's worker counted them
    assert b.pid in second_ran_on
    for home in homes:  # they started no Temporal of their own (WRIT_TEMPORAL_ADDRESS is set)
        assert not (home / DB_FILE).exists()
        assert pids_with(str(home / DB_FILE)) == []


# -- 4. `writ serve` runs and stops its own dev server --------------------------------------------


def test_serve_with_the_embedded_dev_server_approves_and_stops_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("WRIT_TEMPORAL_PORT", str(port))  # for serve and for each command that reaches it
    home = tmp_path / "writ-home"
    database = str(home / DB_FILE)
    writ("init", "--data-dir", home)
    keys = _team(home)
    try:
        with WritProcess(["serve", "--port", "0", "--data-dir", home], tmp_path / "serve.log") as serve:
            serve.wait_for(LISTENING)
            assert f"writ: temporal 127.0.0.1:{port} (embedded dev server, state in {database})" in serve.output()
            temporal = pids_with(database)
            assert len(temporal) == 1, f"expected one `temporal` process for {database}: {temporal}"

            plan_id = _propose(home, keys, tmp_path, "Approved on the embedded server")
            assert _approve(home, plan_id, keys["alice"]).startswith("1/2 approvals (alice)")
            assert _approve(home, plan_id, keys["bob"]) == "2/2 approvals (alice, bob); approved"

            assert serve.terminate() == 0, serve.output()
        assert gone_within(temporal) == [], f"`temporal` outlived `writ serve`: {temporal}"
    finally:
        kill_leftovers(database)
    assert "approved" in writ("plan", "show", plan_id, "--data-dir", home).stdout


# -- 5. Temporal is down: nothing is stored, nothing is counted ----------------------------------


@pytest.mark.parametrize("embedded", [False, True], ids=["cluster_address_closed", "embedded_port_closed"])
def test_temporal_down_refuses_submit_and_approve_and_stores_nothing(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     embedded: bool) -> None:
    closed = free_port()
    if embedded:
        monkeypatch.setenv("WRIT_TEMPORAL_PORT", str(closed))
        fix = "start it with `writ serve`"
    else:
        monkeypatch.setenv("WRIT_TEMPORAL_ADDRESS", f"127.0.0.1:{closed}")
        fix = "check that the cluster is up"
    monkeypatch.setenv("WRIT_TEMPORAL_CONNECT_TIMEOUT_S", "2")
    key_dir = tmp_path / "keys"
    key_dir.mkdir(mode=0o700)
    with approval_world(tmp_path, "writ-approval") as world:
        home = world.settings.home
        for name in ("plan-bot", "alice"):
            world.keys[name].save(key_dir / f"{name}.pem")

        _, envelope = _sign(home, key_dir / "plan-bot.pem", tmp_path, "Never stored")
        refused = writ("plan", "submit", envelope, "--data-dir", home, code=1).stderr
        assert refused.startswith("error[workflow_unavailable]: cannot reach Temporal at "
                                  f"127.0.0.1:{closed} (namespace default)"), refused
        assert fix in refused and "nothing was counted" in refused
        assert writ("plan", "list", "--data-dir", home).stdout == "no plans\n"

        stored = world.submit("Stored while Temporal was up")
        refused = writ("approve", stored.id, "--key", key_dir / "alice.pem", "--data-dir", home, code=1).stderr
        assert refused.startswith("error[workflow_unavailable]: cannot reach Temporal"), refused
        assert fix in refused
        assert world.services.plans.approvals(stored.id) == []
        assert world.audit("approval") == []
        assert world.services.plans.get(stored.id).state is PlanState.PENDING


# -- 6. a command that reached Temporal exits with its own status ---------------------------------


def test_commands_that_reach_temporal_exit_with_their_own_status(world: World, tmp_path: Path) -> None:
    """temporalio/sdk-python#300: a short-lived client's threads can abort (134) or crash (139) the interpreter's exit.

    A script that checks ``writ approve``'s status must see what Writ decided (here: 1,
    workflow_missing), every time; 24 runs at once, as a busy CI machine runs them.
    """
    record = world.submit()  # stored without a workflow: each approval is refused after reaching Temporal
    key_dir = tmp_path / "keys"
    key_dir.mkdir(mode=0o700)
    world.keys["alice"].save(key_dir / "alice.pem")
    argv: list[str | Path] = ["approve", record.id, "--key", key_dir / "alice.pem", "--data-dir", world.settings.home]
    runs = [WritProcess(argv, tmp_path / f"approve-{i}.log") for i in range(24)]
    try:
        for command in runs:
            command.start()
        codes = [command.wait(90) for command in runs]
    finally:
        for command in runs:
            command.__exit__(None, None, None)
    shown = "\n".join(f"exit {c}: {r.output()[-300:]}" for c, r in zip(codes, runs, strict=True) if c != 1)
    assert codes == [1] * len(runs), shown
    assert all(r.output().startswith("error[workflow_missing]") for r in runs)
