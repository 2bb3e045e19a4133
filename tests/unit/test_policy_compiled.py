"""The compiled policy (regorus RVM) decides exactly as the interpreter does, and gives way to it when it cannot.

Every case runs the same input through an engine that evaluates the compiled program and one
built with ``compiled=False`` (the tree interpreter alone, as before ADR 0014): decisions and
documents must be identical, including the fail-closed ones.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.factories import NOW, call_input, iso, plan_context
from support.opa import write_policies

from writ.engine.core.errors import PolicyEvaluationError
from writ.engine.core.settings import Limits, shipped_policy_dir
from writ.engine.policy.base import DECISION_PATH
from writ.engine.policy.compiled import ENTRY_POINTS
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.models import Decision
from writ.plans.assessment import REQUIREMENT_PATH, RESULT_PATH, RETRY_PATH

NO_RELOAD = Limits(policy_reload_interval_s=1e9)
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def pair() -> tuple[EmbeddedEngine, EmbeddedEngine]:
    return (EmbeddedEngine(shipped_policy_dir(), NO_RELOAD),
            EmbeddedEngine(shipped_policy_dir(), NO_RELOAD, compiled=False))


def view(d: Decision) -> tuple[Any, ...]:
    return d.allow, [(r.code, r.message) for r in d.reasons], [(o.code, o.message) for o in d.obligations]


def outcome(engine: EmbeddedEngine, path: str, doc: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", engine.evaluate(path, doc)
    except PolicyEvaluationError as e:
        return "error", e.code


def test_every_entry_point_of_the_shipped_policies_runs_compiled(pair: tuple[EmbeddedEngine, EmbeddedEngine]) -> None:
    compiled, interpreted = pair
    assert compiled.compiled.compiled == ENTRY_POINTS
    assert [r["mode"] for r in compiled.compiled.report()] == ["compiled"] * len(ENTRY_POINTS)
    assert {r["mode"] for r in interpreted.compiled.report()} == {"interpreted"}


# -- decisions ------------------------------------------------------------------------------------

ROLES = ["planner", "executor", "approver", "auditor", "admin", "nobody"]
TOOLS = [("git", "git_status"), ("git", "git_commit"), ("fs", "write_file"), ("fs", "read_text_file"),
         ("writ", "writ_plan_propose"), ("writ", "writ_plan_begin"), ("writ", "writ_plan_status"),
         ("unknown", "tool")]
METHODS = [None, "tools/call", "resources/read", "prompts/get", "sampling/createMessage"]
PLAN_STATES = ["approved", "executing", "pending", "expired", "rejected"]


@st.composite
def decision_inputs(draw: st.DrawFn) -> dict[str, Any]:
    server, tool = draw(st.sampled_from(TOOLS))
    plan = None
    if draw(st.booleans()):
        plan = plan_context(state=draw(st.sampled_from(PLAN_STATES)), step_matches=draw(st.booleans()),
                            planner=draw(st.sampled_from(["plan-bot", "exec-bot"])),
                            expires_in=timedelta(minutes=draw(st.integers(-60, 60))))
    doc = call_input(principal=draw(st.sampled_from(["plan-bot", "exec-bot", "eve"])), role=draw(st.sampled_from(ROLES)),
                     server=server, tool=tool, plan=plan, locked=draw(st.booleans()),
                     annotations=draw(st.sampled_from([None, {"readOnlyHint": True}, {"destructiveHint": True}])),
                     method=draw(st.sampled_from(METHODS)))
    doc["tool"]["annotations_trusted"] = draw(st.booleans())
    return doc


@EXAMPLES
@given(doc=decision_inputs())
def test_compiled_and_interpreted_decisions_are_identical(pair: tuple[EmbeddedEngine, EmbeddedEngine],
                                                          doc: dict[str, Any]) -> None:
    compiled, interpreted = pair
    assert view(compiled.decide(doc)) == view(interpreted.decide(doc))


MALFORMED = {
    "now_not_a_time": lambda d: d.update(now="yesterday"),
    "now_feb_30": lambda d: d.update(now="2026-02-30T10:00:00Z"),
    "groups_not_strings": lambda d: d.update(groups=[1, 2]),
    "tool_name_empty": lambda d: d["tool"].update(name=""),
    "plan_without_expiry": lambda d: d.update(plan={"id": "x", "state": "executing", "planner": "p"}),
    "plan_expiry_garbage": lambda d: d.update(plan={**plan_context(), "expires_at": "soon"}),
    "annotations_a_list": lambda d: d["tool"].update(annotations=[1]),
}


@pytest.mark.parametrize("break_it", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_documents_get_the_same_answer_from_both(pair: tuple[EmbeddedEngine, EmbeddedEngine],
                                                           break_it: Any) -> None:
    """Documents the input model would refuse, evaluated raw: the policy's input checks decide on both."""
    compiled, interpreted = pair
    doc = call_input(role="executor", server="git", tool="git_commit", plan=plan_context())
    break_it(doc)
    assert outcome(compiled, DECISION_PATH, doc) == outcome(interpreted, DECISION_PATH, doc)
    assert outcome(compiled, DECISION_PATH, doc)[0] == "value"


# -- approval documents --------------------------------------------------------------------------


@st.composite
def approval_docs(draw: st.DrawFn) -> dict[str, Any]:
    created = NOW - timedelta(hours=draw(st.integers(0, 48)))
    plan = {"id": "sha256:" + "ab" * 32, "planner": "plan-bot", "created_at": iso(created),
            "expires_at": iso(created + timedelta(hours=draw(st.integers(1, 72)))),
            "steps": [{"server": s, "tool": t} for s, t in draw(st.lists(st.sampled_from(TOOLS), min_size=1, max_size=4))]}
    approvals = [
        {"approver": draw(st.sampled_from(["alice", "bob", "carol", "plan-bot"])),
         "role": draw(st.sampled_from(["approver", "planner", "executor"])),
         "groups": draw(st.lists(st.sampled_from(["code-owners", "security"]), unique=True)),
         "decision": draw(st.sampled_from(["approve", "reject"])),
         "plan_id": draw(st.sampled_from([plan["id"], "sha256:" + "cd" * 32])),
         "at": iso(NOW - timedelta(minutes=draw(st.integers(0, 600)))),
         "key_valid": draw(st.booleans())}
        for _ in range(draw(st.integers(0, 4)))
    ]
    return {"plan": plan, "approvals": approvals, "now": iso(NOW), "step_index": draw(st.integers(0, 3)),
            "attempt": draw(st.integers(1, 4))}


@EXAMPLES
@given(doc=approval_docs())
def test_compiled_and_interpreted_approval_documents_are_identical(pair: tuple[EmbeddedEngine, EmbeddedEngine],
                                                                   doc: dict[str, Any]) -> None:
    compiled, interpreted = pair
    for path in (REQUIREMENT_PATH, RESULT_PATH, RETRY_PATH):
        assert outcome(compiled, path, doc) == outcome(interpreted, path, doc), path


def test_a_document_no_entry_point_names_is_interpreted(pair: tuple[EmbeddedEngine, EmbeddedEngine]) -> None:
    compiled, _ = pair
    assert compiled.compiled.mode("writ.authz.permit") == "interpreted"
    assert compiled.evaluate("writ.authz.class", call_input(tool="git_status")) == "read"


# -- what the compiler refuses, and answers it cannot give --------------------------------------

WALK = """
    package writ.authz

    import rego.v1

    # walk is a loop the RVM compiler does not support (regorus 0.13): the interpreter runs this.
    strings := [v | walk(input.args, [_, v]); is_string(v)]

    decision := {"allow": count(strings) == 1, "reasons": [], "obligations": []}
"""


def test_an_entry_point_the_compiler_refuses_is_interpreted_and_reported(tmp_path: Path) -> None:
    write_policies(tmp_path, {"writ/authz.rego": WALK})
    engine = EmbeddedEngine(tmp_path, NO_RELOAD)
    report = {r["entry_point"]: r for r in engine.compiled.report()}
    assert report["data.writ.authz.decision"]["mode"] == "interpreted"
    assert "walk" in str(report["data.writ.authz.decision"]["why"])
    # The approval entry points do not exist in this set: refused too, and the interpreter says undefined.
    assert report["data.writ.approval.result"]["mode"] == "interpreted"
    interpreted = EmbeddedEngine(tmp_path, NO_RELOAD, compiled=False)
    for args in ({"repo_path": "/srv/repo"}, {"a": "x", "b": ["y"]}):
        d = engine.decide(call_input(args=args))
        assert view(d) == view(interpreted.decide(call_input(args=args)))
    assert engine.decide(call_input(args={"repo_path": "/srv/repo"})).allow is True
    with pytest.raises(PolicyEvaluationError) as e:
        engine.evaluate(RESULT_PATH, {})
    assert e.value.code == "policy_undefined"


UNDEFINED_FOR_EXECUTORS = """
    package writ.authz

    import rego.v1

    decision := {"allow": true, "reasons": [], "obligations": []} if input.role == "planner"
"""

LITERAL_MARK = """
    package writ.authz

    import rego.v1

    decision := "<undefined>"
"""


def test_an_undefined_compiled_answer_is_left_to_the_interpreter(tmp_path: Path) -> None:
    write_policies(tmp_path, {"writ/authz.rego": UNDEFINED_FOR_EXECUTORS})
    engine = EmbeddedEngine(tmp_path, NO_RELOAD)
    assert engine.compiled.mode(DECISION_PATH) == "compiled"
    assert engine.decide(call_input(role="planner")).allow is True
    assert engine.decide(call_input(role="executor")).reason_codes == ["policy_undefined"]


def test_a_policy_answering_the_vm_undefined_mark_as_text_is_a_wrong_shape_not_undefined(tmp_path: Path) -> None:
    write_policies(tmp_path, {"writ/authz.rego": LITERAL_MARK})
    engine = EmbeddedEngine(tmp_path, NO_RELOAD)
    interpreted = EmbeddedEngine(tmp_path, NO_RELOAD, compiled=False)
    d = engine.decide(call_input())
    assert d.reason_codes == ["policy_result_invalid"]
    assert view(d) == view(interpreted.decide(call_input()))


def test_a_reload_compiles_the_new_set(tmp_path: Path) -> None:
    write_policies(tmp_path, {"writ/authz.rego": UNDEFINED_FOR_EXECUTORS})
    engine = EmbeddedEngine(tmp_path, NO_RELOAD)
    before = engine.compiled.revision
    allow_all = copy.copy(UNDEFINED_FOR_EXECUTORS).replace(' if input.role == "planner"', "")
    write_policies(tmp_path, {"writ/authz.rego": allow_all})
    assert engine.reload_if_changed(force=True) is True
    assert engine.compiled.revision == engine.revision != before
    assert engine.compiled.mode(DECISION_PATH) == "compiled"
    assert engine.decide(call_input(role="executor")).allow is True
