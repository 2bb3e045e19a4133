"""`writ attest export --since T --until T -o DIR`: one bundle per plan that ended in the period, real stores, real CLI.

Plans end at known times (the store's ``now``); the CLI runs through click's runner as an
operator types it, and each bundle is verified offline as an auditor would.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.integration.test_attest_bundle import step_input
from tests.integration.test_plan_store import NOW, World, make_world
from writ.attestations.audit import AuditLog
from writ.engine.cli.main import main
from writ.engine.core.settings import Settings
from writ.engine.policy.base import new_decision_id
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.models import Decision
from writ.engine.policy.pdp import audit_payload
from writ.engine.wiring.policy_record import watch_embedded
from writ.engine.wiring.services import open_services
from writ.plans.canonical import sha256_digest
from writ.plans.models import Plan

RESULT = "sha256:" + "cd" * 32
SINCE, UNTIL = "2026-11-22T10:00:00Z", "2026-11-22T14:00:00+01:00"  # [10:00, 13:00) UTC


def writ(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--data-dir", str(home)])


class Ended:
    """A data directory whose plans ended at known times: in the period, on its edges, outside it, or not at all."""

    def __init__(self, home: Path, engine: EmbeddedEngine) -> None:
        self.home = home
        assert writ(home, "init").exit_code == 0
        with open_services(Settings(home=home)) as w:
            watch_embedded(w.store, engine)  # what the composition root does when the engine loads its policies
            world = make_world(w.store, engine)
            self.completed = self._ran(world, 1, "completed", NOW)  # on --since: in
            self.failed = self._ran(world, 2, "failed", NOW + timedelta(hours=1))
            self.aborted = self._ran(world, 3, "aborted", NOW + timedelta(hours=2, minutes=59))
            self.on_until = self._ran(world, 4, "completed", NOW + timedelta(hours=3))  # on --until: out
            self.before = self._ran(world, 5, "completed", NOW - timedelta(microseconds=1))  # out
            self.rejected = world.pending(now=NOW - timedelta(minutes=6))
            world.plans.add_approval(self.rejected.id, world.decision(self.rejected.id, "alice", "reject"), now=NOW)
            self.pending = world.pending(now=NOW - timedelta(minutes=7))
            self.world = world

    @staticmethod
    def _ran(world: World, n: int, outcome: str, end: Any) -> Plan:
        plan = world.executing(now=NOW - timedelta(minutes=10 + n))  # another created_at: another plan id
        world.claim(plan, 0)
        if outcome == "failed":
            world.plans.record_result(plan.id, 0, RESULT, "failed", now=end)
            return plan
        world.plans.record_result(plan.id, 0, RESULT, "succeeded", now=NOW)
        if outcome == "completed":
            world.claim(plan, 1)
            world.plans.record_result(plan.id, 1, RESULT, "succeeded", now=NOW)
        world.plans.finish(plan.id, outcome, now=end, reason="" if outcome == "completed" else "stopped by an operator")
        return plan

    @property
    def in_period(self) -> list[Plan]:
        return [self.completed, self.failed, self.aborted]


@pytest.fixture
def ended(tmp_path: Path, policy_dir: Path) -> Ended:
    return Ended(tmp_path / "home", EmbeddedEngine(policy_dir))


def hex_of(plan: Plan) -> str:
    return plan.id.removeprefix("sha256:")


def test_export_by_period_writes_one_verified_bundle_per_plan_that_ended_in_it(ended: Ended, tmp_path: Path) -> None:
    out = tmp_path / "evidence" / "2026-11-22"
    done = writ(ended.home, "attest", "export", "--since", SINCE, "--until", UNTIL, "-o", str(out), "--json")
    assert done.exit_code == 0, done.output
    listed = json.loads(done.stdout)
    assert [e["plan_id"] for e in listed] == [p.id for p in ended.in_period]  # in the order they ended
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{hex_of(p)}.bundle.json" for p in ended.in_period)
    for entry in listed:
        raw = Path(entry["path"]).read_bytes()
        assert (entry["sha256"], entry["bytes"], entry["status"]) == (sha256_digest(raw), len(raw), "written")
    progress = done.stderr.splitlines()
    assert progress[0].startswith(f"[1/3] {ended.completed.id[:19]}.. ") and progress[0].endswith(" written")
    assert progress[-1] == ("3 plan(s) ended in [2026-11-22T10:00:00Z, 2026-11-22T13:00:00Z): 3 bundle(s) "
                            f"written, 0 kept (already in {out}), 0 failed; " + progress[-1].rsplit("; ", 1)[1])

    root = tmp_path / "trust-root.json"
    assert writ(ended.home, "trust", "export", "-o", str(root)).exit_code == 0
    auditor = tmp_path / "auditor"  # no data directory of the instance
    for plan, state in zip(ended.in_period, ("completed", "failed", "aborted"), strict=True):
        ok = writ(auditor, "attest", "verify", str(out / f"{hex_of(plan)}.bundle.json"), "--trust", str(root))
        assert ok.exit_code == 0 and ok.output.startswith(f"bundle OK: plan {plan.id}"), ok.output
        assert f"state {state}" in ok.output


def test_dates_are_midnight_utc_and_text_mode_prints_a_summary(ended: Ended, tmp_path: Path) -> None:
    day = writ(ended.home, "attest", "export", "--since", "2026-11-22", "--until", "2026-11-23", "-o",
               str(tmp_path / "day"))
    assert day.exit_code == 0, day.output
    assert "5 plan(s) ended in [2026-11-22T00:00:00Z, 2026-11-23T00:00:00Z): 5 bundle(s) written" in day.stdout
    assert len(list((tmp_path / "day").iterdir())) == 5  # not the rejected nor the pending one
    empty = writ(ended.home, "attest", "export", "--since", "2026-11-23", "-o", str(tmp_path / "later"))
    assert empty.exit_code == 0 and empty.stdout.startswith("no plan ended in [2026-11-23T00:00:00Z, "), empty.output


def test_a_second_run_keeps_what_is_there_and_never_overwrites(ended: Ended, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert writ(ended.home, "attest", "export", "--since", SINCE, "--until", UNTIL, "-o", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    stranger = out / f"{hex_of(ended.failed)}.bundle.json"
    stranger.write_bytes(b'{"not": "a bundle"}')
    again = writ(ended.home, "attest", "export", "--since", SINCE, "--until", UNTIL, "-o", str(out), "--json")
    assert again.exit_code == 1, again.output
    assert [e["status"] for e in json.loads(again.stdout)] == ["kept", "failed", "kept"]
    assert f"error[file_exists]: {stranger} exists and is not a bundle of plan {ended.failed.id[:19]}.." in again.stderr
    assert stranger.read_bytes() == b'{"not": "a bundle"}'
    assert all(p.read_bytes() == before[p.name] for p in out.iterdir() if p != stranger)
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no partial file left behind


def test_a_plan_whose_bundle_cannot_be_made_is_reported_and_the_others_are_exported(ended: Ended,
                                                                                    tmp_path: Path) -> None:
    unknown = "sha256:" + "ee" * 32  # a policy revision whose bundle was never recorded decided a call of this plan
    decision = Decision(decision_id=new_decision_id(), allow=True, reasons=[], obligations=[],
                        policy_revision=unknown, engine="embedded", duration_us=0)
    AuditLog(ended.world.store).append("decision", audit_payload(decision, step_input(ended.failed.id, 0)))
    out = tmp_path / "out"
    done = writ(ended.home, "attest", "export", "--since", SINCE, "--until", UNTIL, "-o", str(out))
    assert done.exit_code == 1, done.output
    assert (f"[2/3] {ended.failed.id[:19]}.. FAILED error[not_found]: policy revision {unknown} decided this plan "
            "but its policy bundle was never recorded") in done.stderr
    assert "2 bundle(s) written, 0 kept" in done.stdout and "1 failed" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{hex_of(p)}.bundle.json"
                                                           for p in (ended.completed, ended.aborted))


@pytest.mark.parametrize(("args", "message"), [
    (["3f2a9c0d", "--since", SINCE], "give PLAN (3f2a9c0d) or --since/--until, not both"),
    (["3f2a9c0d", "--until", UNTIL], "give PLAN (3f2a9c0d) or --since/--until, not both"),
    (["--until", UNTIL], "--until needs --since: the period is [--since, --until)"),
    ([], "give PLAN (a plan id or a prefix of its hex digits), or --since T [--until T]"),
    (["--since", "yesterday"], "--since 'yesterday' is not an ISO 8601 time (e.g. 2026-11-22T10:00:00Z); "
     "or give a date, e.g. 2026-11-22 (midnight UTC)"),
    (["--since", "2026-11-22T10:00:00"], "--since '2026-11-22T10:00:00' has no timezone; add Z for UTC"),
    (["--since", "2026-02-30"], "--since '2026-02-30' is not a calendar date (YYYY-MM-DD)"),
    (["--since", SINCE, "--until", "2026-11-22T11:00:00+01:00"],
     "--since 2026-11-22T10:00:00Z is not before --until 2026-11-22T10:00:00Z: the period [since, until) is empty"),
])
def test_each_bad_invocation_is_a_typed_error_that_says_what_to_do(ended: Ended, tmp_path: Path, args: list[str],
                                                                    message: str) -> None:
    out = tmp_path / "out"
    done = writ(ended.home, "attest", "export", *args, "-o", str(out))
    assert done.exit_code == 1 and done.stdout == "", done.output
    assert done.stderr.startswith("error[input_invalid]: " + message), done.stderr
    assert not out.exists()


def test_output_that_is_a_file_is_refused_for_a_period(ended: Ended, tmp_path: Path) -> None:
    out = tmp_path / "bundles"
    out.write_text("keep me")
    done = writ(ended.home, "attest", "export", "--since", SINCE, "-o", str(out))
    assert done.exit_code == 1
    assert done.stderr.startswith(f"error[file_exists]: -o {out} is a file: with --since, -o names a directory")
    assert out.read_text() == "keep me"


def test_one_plan_with_json_prints_the_same_list_of_one(ended: Ended, tmp_path: Path) -> None:
    out = tmp_path / "one.bundle.json"
    done = writ(ended.home, "attest", "export", hex_of(ended.completed)[:12], "-o", str(out), "--json")
    assert done.exit_code == 0, done.output
    raw = out.read_bytes()
    assert json.loads(done.stdout) == [{"plan_id": ended.completed.id, "path": str(out), "sha256": sha256_digest(raw),
                                        "bytes": len(raw), "status": "written"}]
