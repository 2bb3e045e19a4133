"""Red team of the attestation bundle verifier (issue 12): an operator's or a careless export's bundles, refused.

The attacker holds the instance key and the database, not the approvers' or the planner's
private keys. Each test is named for the attack and starts from the honest bundle of
tests/integration/test_attest_bundle.py (a completed two-step plan, its decisions, its policy):
the operator edits the database (``World.sql``), appends audit entries of its choosing before
the log is checkpointed, or edits and re-signs the bundle's parts. Every signature and proof the
verifier checks is then genuine; only the checks these tests name catch the lie. Hostile shapes
must end in a ``BundleError`` naming the check, never a traceback (a hypothesis test at the end).
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration import test_attest_bundle as base
from tests.integration.test_attest_bundle import Honest, refused, statement_edit
from tests.integration.test_plan_store import CALLS, DEF, NOW, make_world, steps
from writ.attestations.audit import AuditLog
from writ.attestations.bundle_format import (
    AUDIT_PART,
    DECISIONS_PART,
    EXECUTION_PART,
    REQUIREMENT_PART,
    policy_part,
    split_bundle,
)
from writ.engine.core.db import Database
from writ.engine.core.errors import BundleError
from writ.engine.policy.bundle import bundle_bytes, bundle_members
from writ.engine.policy.offline import main as offline_main
from writ.engine.policy.offline import policy_revision_of, verify_offline
from writ.engine.policy.policyset import PolicySet, load_policy_set
from writ.plans.canonical import digest, parse_strict
from writ.plans.keys import PrivateKey
from writ.plans.models import PathGlob, Plan, PlanStep

engine = base.engine  # the fixtures of the honest bundle
honest = base.honest

# -- helpers: what the operator does to the database and the log before the bundle is exported -----


def claim_entries(honest: Honest) -> list[dict[str, Any]]:
    """The plan's ``step_claim`` payloads as the store logged them."""
    return [p for k, p in honest.world.audit() if k == "step_claim" and p.get("plan_id") == honest.plan.id]


def forge_claims(honest: Honest, **changes: Any) -> None:
    """The operator rewrites the plan's claim rows and logs a claim entry to match, for each step."""
    sets = ", ".join(f"{k} = :{k}" for k in changes)
    honest.world.sql(f"UPDATE step_claims SET {sets} WHERE plan_id = :plan_id",  # noqa: S608 - column names of ours
                     plan_id=honest.plan.id, **changes)
    log = AuditLog(honest.world.store)
    for entry in claim_entries(honest)[:2]:
        log.append("step_claim", {**entry, **changes})


# -- who ran it, what ran, and when ----------------------------------------------------------------


def test_step_run_by_the_planner(honest: Honest) -> None:
    forge_claims(honest, executor="plan-bot")
    honest.world.sql("UPDATE plans SET executor = 'plan-bot' WHERE id = :i", i=honest.plan.id)
    refused(honest, honest.build(), "executed steps", "step 0 was run by 'plan-bot', who wrote the plan")


def test_step_run_by_an_approver(honest: Honest) -> None:
    forge_claims(honest, executor="alice")
    honest.world.sql("UPDATE plans SET executor = 'alice' WHERE id = :i", i=honest.plan.id)
    refused(honest, honest.build(), "executed steps", "step 0 was run by 'alice', who holds no executor key")


def test_step_run_by_another_executor_than_the_one_that_began_the_plan(honest: Honest) -> None:
    honest.world.sql("UPDATE step_claims SET executor = 'exec-bot-2' WHERE plan_id = :p AND step_index = 1",
                     p=honest.plan.id)
    for entry in claim_entries(honest)[1:2]:
        AuditLog(honest.world.store).append("step_claim", {**entry, "executor": "exec-bot-2"})
    refused(honest, honest.build(), "executed steps", "step 1 was run by 'exec-bot-2', the plan was begun by 'exec-bot'")


def test_step_executor_rewritten_in_the_execution_part_only(honest: Honest) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["steps"][0]["executor"] = "exec-bot-2"
        p["executor"] = "exec-bot-2"
    refused(honest, honest.resigned(statement_edit(EXECUTION_PART, edit)), "executed steps",
            "step 0 was run by 'exec-bot-2', who holds no executor key")


def test_step_claim_logged_for_another_tool_than_approved(honest: Honest) -> None:
    # beside the honest claim, the log shows step 0 claimed for another tool: the store never writes that
    entry = claim_entries(honest)[0]
    AuditLog(honest.world.store).append("step_claim", {**entry, "tool": "delete_repo"})
    refused(honest, honest.build(), "executed steps",
            "a claim of step 0 in audit entry \\d+ does not match the approved step: tool is 'delete_repo'")


def test_step_claim_logged_with_another_definition_digest(honest: Honest) -> None:
    entry = claim_entries(honest)[1]
    AuditLog(honest.world.store).append("step_claim", {**entry, "definition_digest": "sha256:" + "ee" * 32})
    refused(honest, honest.build(), "executed steps", "a claim of step 1 in audit entry \\d+ does not match the "
            "approved step: tool definition of git/git_commit is sha256:e")


def test_step_claimed_before_the_approvals_were_signed(honest: Honest) -> None:
    # the approvers signed at 10:00; the operator's store shows both steps claimed half an hour earlier
    early = "2026-11-22T09:30:00.000000Z"
    honest.world.sql("UPDATE step_claims SET claimed_at = :t WHERE plan_id = :p", t=early, p=honest.plan.id)
    log = AuditLog(honest.world.store)
    for entry in claim_entries(honest)[:2]:
        log.append("step_claim", {**entry, "at": early})
    refused(honest, honest.build(), "approvals", "not counted: alice's was signed at 2026-11-22T10:00:00Z, after "
            "step 0 was claimed at 2026-11-22T09:30:00Z")


def test_step_claimed_after_the_plan_expired(honest: Honest) -> None:
    late = "2026-11-22T14:00:00.000000Z"  # the plan was made at 09:55 for 4 h
    honest.world.sql("UPDATE step_claims SET claimed_at = :t WHERE plan_id = :p AND step_index = 1", t=late,
                     p=honest.plan.id)
    AuditLog(honest.world.store).append("step_claim", {**claim_entries(honest)[1], "at": late})
    refused(honest, honest.build(), "executed steps", "step 1 was claimed at 2026-11-22T14:00:00Z, after the plan "
            "expired at 2026-11-22T13:55:00Z")


def test_step_claimed_at_rewritten_in_the_execution_part_only(honest: Honest) -> None:
    def edit(p: dict[str, Any]) -> None:
        p["steps"][1]["claimed_at"] = "2026-11-22T11:00:00Z"
    refused(honest, honest.resigned(statement_edit(EXECUTION_PART, edit)), "audit completeness",
            "step 1's claim has no entry in the audit log")


def test_step_claim_logged_before_the_approvals(honest: Honest) -> None:
    # the operator ran the steps of a plan still pending (its claims are in the log before any approval);
    # the approvals, signed honestly afterwards, then fill the store and the plan completes on paper
    world = honest.world
    plan = world.pending(now=NOW - timedelta(minutes=6))
    log = AuditLog(world.store)
    for i, call in enumerate(CALLS):
        log.append("step_claim", {"plan_id": plan.id, "step_index": i, "executor": "exec-bot", "server": call["server"],
                                  "tool": call["tool"], "definition_digest": call["definition_digest"],
                                  "args_digest": digest(call["args"]), "claimed": True, "at": "2026-11-22T10:00:00.000000Z"})
    world.plans.add_approval(plan.id, world.decision(plan.id, "alice"), now=NOW)
    world.plans.add_approval(plan.id, world.decision(plan.id, "bob"), now=NOW)
    world.plans.begin(plan.id, "exec-bot", now=NOW)
    for i in range(2):
        world.claim(plan, i)
        world.plans.record_result(plan.id, i, "sha256:" + "cd" * 32, "succeeded", now=NOW)
    world.plans.finish(plan.id, "completed", now=NOW)
    honest.plan = plan
    refused(honest, honest.build(plan.id), "approvals",
            r"not counted: alice's was logged in audit entry \d+, after the first claim in entry \d+")


# -- hostile shapes: a BundleError naming the check, never a traceback -----------------------------


def test_decision_input_logged_as_deeply_nested_json_text(honest: Honest) -> None:
    # json.loads of the logged text recursed until Python gave up: a RecursionError traceback, not a refusal
    deep = "[" * 100_000 + "]" * 100_000
    decision = {"decision_id": "d-deep", "allow": True, "reasons": [], "obligations": [],
                "policy_revision": honest.engine.revision, "engine": "embedded", "duration_us": 1}
    AuditLog(honest.world.store).append("decision", {"plan_id": honest.plan.id, "decision": decision,
                                                     "input": {"json_text": deep}})
    refused(honest, honest.build(), "decision replay", r"decision \d+ was logged with an input that is not JSON")


def test_part_that_is_not_json_is_a_bundle_error(honest: Honest) -> None:
    raw = honest.resigned(lambda parts: parts.__setitem__(EXECUTION_PART, b"\xff not json"))
    refused(honest, raw, "bundle format", "not JSON|not valid")


def repacked_policy(honest: Honest, extra: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """The bundle with its policy part re-packed: the same files, then ``extra`` members; manifest re-signed."""
    name = policy_part(honest.engine.revision or "")
    files = bundle_members(split_bundle(honest.raw)[0][name])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo("/" + path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for info, content in extra:
            tar.addfile(info, io.BytesIO(content))
    packed = gzip.compress(buf.getvalue(), compresslevel=1)
    return honest.resigned(lambda parts: parts.__setitem__(name, packed))


def test_policy_bundle_with_a_pax_header_bomb(honest: Honest) -> None:
    # 80 MB of PAX header compresses to ~80 KB; tarfile read all of it into memory, then accepted the bundle
    info = tarfile.TarInfo("/notes.txt")
    info.pax_headers = {"comment": "x" * (80 * 1024 * 1024)}
    refused(honest, repacked_policy(honest, [(info, b"")]), "policy bundle",
            "bundle is larger than 67108864 bytes unpacked")


def test_policy_bundle_with_thousands_of_empty_members(honest: Honest) -> None:
    members = []
    for i in range(5000):
        info = tarfile.TarInfo(f"/d{i}")
        info.type = tarfile.DIRTYPE
        members.append((info, b""))
    refused(honest, repacked_policy(honest, members), "policy bundle", "bundle has more than 4096 members")


def test_policy_bundle_with_a_symlink_and_traversal_names_is_the_same_policy(honest: Honest) -> None:
    # by design: members are read into a dict by name and nothing is written to disk; a link is skipped,
    # and a module named ../x.rego is a module like any other, counted in the revision the verifier recomputes
    link = tarfile.TarInfo("/writ/evil.rego")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    assert verify_offline(repacked_policy(honest, [(link, b"")]), honest.trust_root).decisions_replayed == 2
    rego = b"package writ.extra\n\nx := 1\n"
    traversal = tarfile.TarInfo("/../../x.rego")
    traversal.size = len(rego)
    refused(honest, repacked_policy(honest, [(traversal, rego)]), "policy bundle",
            "its manifest says revision sha256:[0-9a-f]{64}, its files are sha256:")


JSON_PARTS = (AUDIT_PART, DECISIONS_PART, EXECUTION_PART, "requirement.intoto.json", "trust.intoto.json")
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=20),
    st.just([]), st.just({}), st.just([[[[[[[[]]]]]]]]), st.just("2026-13-45T99:99:99Z"), st.just(-1),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def test_random_mutations_of_an_honest_bundle_end_in_bundle_error(honest: Honest) -> None:
    parts, _ = split_bundle(honest.raw)
    docs = {name: parse_strict(parts[name]) for name in JSON_PARTS}
    paths = {name: _paths(doc) for name, doc in docs.items()}

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.sampled_from(JSON_PARTS), st.data(), HOSTILE)
    def mutated(name: str, data: st.DataObject, value: Any) -> None:
        path = data.draw(st.sampled_from(paths[name]))
        doc = _set(parse_strict(parts[name]), path, value)
        raw = honest.resigned(lambda p: p.__setitem__(name, json.dumps(doc).encode()))
        try:
            verify_offline(raw, honest.trust_root)
        except BundleError:
            pass  # refused, naming a check; anything else (a traceback) fails the test

    mutated()


# -- a constrained step's arguments, checked offline against the decision that allowed its call -----


def constrained_steps() -> list[PlanStep]:
    """Step 0 writes any Markdown file under /repo (its path constrained, not pinned); step 1 is pinned."""
    return [PlanStep(server="fs", tool="write_file", definition_digest=DEF, args={"content": "hello\n"},
                     constraints=(PathGlob(arg="path", root="/repo", glob="*.md"),)),
            *steps()[1:]]


def run_constrained(h: Honest, *, decide: tuple[int, ...] = (0, 1)) -> Plan:
    """The constrained plan run as the gateway runs it: the steps in ``decide`` asked of policy first."""
    world, plan = h.world, h.world.executing(steps=constrained_steps())
    for i in range(2):
        if i in decide:
            assert h.pdp.decide(base.step_input(plan.id, i)).allow
        world.claim(plan, i)
        world.plans.record_result(plan.id, i, "sha256:" + "cd" * 32, "succeeded", now=NOW)
    world.plans.finish(plan.id, "completed", now=NOW)
    return plan


def test_constrained_step_is_checked_against_the_decision_that_allowed_it(store: Database, engine: Any) -> None:
    h = Honest(make_world(store, engine), PrivateKey.generate(), engine, run=run_constrained)
    report = verify_offline(h.raw, h.trust_root)
    assert (report.steps_run, report.state) == (2, "completed")


def test_constrained_step_ran_with_arguments_outside_the_constraint(store: Database, engine: Any) -> None:
    # the operator's gateway ran step 0 on /etc/passwd: it logs an allow for that call (step_matches: true),
    # the store's row and a claim entry state the digest of those arguments; every signature and proof is genuine
    h = Honest(make_world(store, engine), PrivateKey.generate(), engine, run=run_constrained)
    evil = {"path": "/etc/passwd", "content": "hello\n"}
    assert h.pdp.decide(base.step_input(h.plan.id, 0).model_copy(update={"args": evil})).allow
    h.world.sql("UPDATE step_claims SET args_digest = :d WHERE plan_id = :p AND step_index = 0", d=digest(evil),
                p=h.plan.id)
    AuditLog(h.world.store).append("step_claim", {**claim_entries(h)[0], "args_digest": digest(evil)})
    refused(h, h.build(), "step arguments", "step 0 \\(attempt 1\\) ran with arguments outside the approved "
            "constraints: argument 'path': .*/etc/passwd")


def test_constrained_step_claim_without_its_allowing_decision(store: Database, engine: Any) -> None:
    # no decision allowed step 0's call (the operator ran it past the gateway, or left its decision out)
    h = Honest(make_world(store, engine), PrivateKey.generate(), engine,
               run=lambda h: run_constrained(h, decide=(1,)))
    refused(h, h.build(), "step arguments", "step 0 \\(attempt 1\\) is bound by constraints and no logged decision "
            "allowed its call")


# -- the policy: the security team's, not one the operator included -------------------------------


def operators_policy(policy_dir: Path, tmp_path: Path) -> PolicySet:
    """The shipped policy with every approval rule lowered to a quorum of 1, no group: the operator's own."""
    mine = tmp_path / "operator-policies"
    shutil.copytree(policy_dir, mine, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (mine / "writ" / "approval_rules.json").write_text(json.dumps({"default": {"quorum": 1, "required_groups": []}}))
    return load_policy_set(mine)


def with_operators_policy(honest: Honest, ps: PolicySet) -> bytes:
    """The operator's policy included and named as the requirement's revision, bob's approval dropped; re-signed."""
    def change(parts: dict[str, bytes]) -> None:
        parts[policy_part(ps.revision)] = bundle_bytes(ps)
        statement_edit(REQUIREMENT_PART, lambda p: p.__setitem__("policy_revision", ps.revision))(parts)
        del parts[max(n for n in parts if n.startswith("approvals/"))]
    return honest.resigned(change)


def test_bundle_with_an_operator_policy_refused_against_the_teams_policy(honest: Honest, policy_dir: Path,
                                                                         tmp_path: Path) -> None:
    ps = operators_policy(policy_dir, tmp_path)
    raw = with_operators_policy(honest, ps)
    report = verify_offline(raw, honest.trust_root)  # self-consistent: without --policy only the report shows it
    assert report.approvers == ("alice",) and ps.revision in report.summary()
    team = policy_revision_of(policy_dir)
    with pytest.raises(BundleError, match=f"policy revision {ps.revision} is not the policy you gave \\({team}\\)"
                       ) as caught:
        verify_offline(raw, honest.trust_root, policy_revision=team)
    assert caught.value.check == "policy revision"

    bundle, root = tmp_path / "b.json", tmp_path / "root.json"
    bundle.write_bytes(raw)
    root.write_bytes(honest.trust_root)
    cli = base.writ_cli(tmp_path / "auditor", "attest", "verify", str(bundle), "--trust", str(root),
                        "--policy", str(policy_dir))
    assert cli.exit_code == 1, cli.output
    assert cli.output.startswith(f"error[verification_failed]: policy revision: policy revision {ps.revision} "
                                 "is not the policy you gave"), cli.output


def test_honest_bundle_verifies_against_the_teams_policy_directory_or_bundle_file(
        honest: Honest, policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    packed = tmp_path / "policy.tar.gz"
    packed.write_bytes(bundle_bytes(load_policy_set(policy_dir)))
    assert policy_revision_of(packed) == policy_revision_of(policy_dir) == honest.engine.revision
    report = verify_offline(honest.raw, honest.trust_root, policy_revision=policy_revision_of(packed))
    assert report.policy_checked and f"the policy you gave: {honest.engine.revision}" in report.summary()

    bundle, root = tmp_path / "b.json", tmp_path / "root.json"
    bundle.write_bytes(honest.raw)
    root.write_bytes(honest.trust_root)
    assert offline_main([str(bundle), "--trust", str(root), "--policy", str(policy_dir)]) == 0
    assert capsys.readouterr().out.startswith("bundle OK: plan " + honest.plan.id)
    ops = operators_policy(policy_dir, tmp_path)
    (tmp_path / "ops.tar.gz").write_bytes(bundle_bytes(ops))
    assert offline_main([str(bundle), "--trust", str(root), "--policy", str(tmp_path / "ops.tar.gz")]) == 1
    assert f"is not the policy you gave ({ops.revision})" in capsys.readouterr().err
    assert offline_main([str(bundle), "--trust", str(root), "--policy", str(root)]) == 2  # not a policy
    assert capsys.readouterr().err.startswith(f"error: --policy {root}: ")


def test_cli_verify_prints_a_wrapped_bundle_error_cleanly(honest: Honest, tmp_path: Path) -> None:
    # a part of the wrong shape is a KeyError inside the verifier, wrapped as a BundleError: no traceback
    bundle, root = tmp_path / "b.json", tmp_path / "root.json"
    bundle.write_bytes(honest.resigned(statement_edit(AUDIT_PART, lambda p: p["entries"].append({"seq": "x"}))))
    root.write_bytes(honest.trust_root)
    cli = base.writ_cli(tmp_path / "auditor", "attest", "verify", str(bundle), "--trust", str(root))
    assert cli.exit_code == 1, cli.output
    assert cli.output.startswith("error[verification_failed]: bundle format: a part does not have the expected "
                                 "shape"), cli.output
    assert "Traceback" not in cli.output
