"""Both engines, one policy set, the same decisions.

The shipped policies are evaluated by the embedded engine (regorus, in process) and by
``OpaSidecarEngine`` talking over HTTP to ``tests/support/opa_rest_server.py``, which serves the
``writ policy bundle`` output with OPA's own Go engine. Every case, hand-written or
generated, must give the same allow, reasons (codes and messages), obligations and
policy revision on both; a disagreement fails with both decisions and the input.
"""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.factories import NOW, call_input, iso, plan_context
from support.opa import FAIL_CLOSED_CODES, opa_sidecar

from writ.engine.core.errors import PolicyEvaluationError
from writ.engine.core.settings import Limits, shipped_policy_dir
from writ.engine.policy.base import DECISION_PATH, PolicyEngine
from writ.engine.policy.embedded import EmbeddedEngine
from writ.engine.policy.models import (
    NON_TOOL_METHODS,
    Decision,
    PlanContext,
    PolicyInput,
    Session,
    Tool,
    ToolAnnotations,
)
from writ.engine.policy.policyset import load_policy_set
from writ.engine.policy.sidecar import OpaSidecarEngine

APPROVAL_PATH = "writ.approval.result"

# The function-scoped fixture is conftest's autouse environment isolation: it needs no
# reset between examples.
PARITY = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedEngine, OpaSidecarEngine]]:
    # No hot reload during the run: the bundle OPA serves is this exact set.
    embedded = EmbeddedEngine(shipped_policy_dir(), Limits(policy_reload_interval_s=1e9))
    with opa_sidecar(embedded.policy_set, tmp_path_factory.mktemp("opa")) as url:
        # A generous timeout: this suite is about decisions, test_sidecar_faults about timeouts.
        sidecar = OpaSidecarEngine(url, Limits(engine_timeout_s=30))
        yield embedded, sidecar
        sidecar.close()


# --- comparing ---------------------------------------------------------------


def view(d: Decision) -> dict[str, Any]:
    return {
        "allow": d.allow,
        "reasons": sorted((r.code, r.message) for r in d.reasons),
        "obligations": sorted((o.code, o.message) for o in d.obligations),
    }


def show(doc: Any) -> str:
    if isinstance(doc, PolicyInput):
        doc = doc.model_dump(mode="json", by_alias=True)
    return json.dumps(doc, indent=1, sort_keys=True, default=str)[:4000]


def decide_both(engines: tuple[PolicyEngine, PolicyEngine], inp: PolicyInput | dict[str, Any]) -> Decision:
    """Decide on both engines; fail unless they agree on everything but ids and timing."""
    embedded, sidecar = engines
    a, b = embedded.decide(inp), sidecar.decide(inp)
    # An input refused before evaluation never reached OPA: the sidecar cannot know a revision yet.
    evaluated = not {"input_invalid", "input_too_large", "input_too_deep"}.intersection(a.reason_codes)
    if view(a) != view(b) or (evaluated and a.policy_revision != b.policy_revision):
        pytest.fail(
            "the engines disagree\n"
            f"input:\n{show(inp)}\n"
            f"embedded: {view(a)} revision={a.policy_revision}\n"
            f"opa:      {view(b)} revision={b.policy_revision}"
        )
    assert a.policy_revision == embedded.revision, (a.policy_revision, embedded.revision)
    return a



def policy_decided(d: Decision) -> bool:
    return not FAIL_CLOSED_CODES.intersection(d.reason_codes)


def evaluate_both(engines: tuple[PolicyEngine, PolicyEngine], path: str, doc: dict[str, Any],
                  set_fields: tuple[str, ...] = ()) -> Any:
    """Raw ``data.<path>`` on both engines; sets in ``set_fields`` compared without order."""
    outcomes: list[tuple[Any, ...]] = []
    for engine in engines:
        try:
            value = engine.evaluate(path, doc)
        except PolicyEvaluationError as e:
            outcomes.append(("error", e.code, e.message))
            continue
        if isinstance(value, dict):
            value = {k: sorted(v, key=lambda x: json.dumps(x, sort_keys=True)) if k in set_fields and
                     isinstance(v, list) else v for k, v in value.items()}
        outcomes.append(("value", value))
    a, b = outcomes
    if a != b or a[0] == "error":
        pytest.fail(
            f"data.{path}: the engines disagree, or the policy is not total\n"
            f"input:\n{show(doc)}\nembedded: {a}\nopa:      {b}"
        )
    return a[1]


# --- hand-written cases ------------------------------------------------------

PLANNER: dict[str, Any] = {"principal": "plan-bot", "role": "planner"}
EXECUTOR: dict[str, Any] = {"principal": "exec-bot", "role": "executor"}
WRITE: dict[str, Any] = {"server": "git", "tool": "git_commit", "args": {"repo_path": "/srv/repo", "message": "fix"}}


def trusted(inp: dict[str, Any]) -> dict[str, Any]:
    """``inp`` from an upstream whose writ.toml entry says ``trust_annotations = true``."""
    return {**inp, "tool": {**inp["tool"], "annotations_trusted": True}}


def named(name: str, inp: dict[str, Any], allow: bool, codes: Collection[str] = (),
          obligations: Collection[str] = ()) -> Any:
    return pytest.param(inp, allow, set(codes), set(obligations), id=name)


NAMED_CASES = [
    named("planner_read_allowed", call_input(**PLANNER), True),
    named("executor_read_allowed", call_input(**EXECUTOR), True),
    named("approver_read_denied", call_input(principal="alice", role="approver"), False, {"role_not_permitted"}),
    named("auditor_read_denied", call_input(principal="aud", role="auditor"), False, {"role_not_permitted"}),
    named("planner_write_denied_and_session_locked", call_input(**PLANNER, **WRITE), False,
          {"planner_cannot_write"}, {"lock_session"}),
    named("admin_write_denied", call_input(principal="root", role="admin", **WRITE), False, {"role_cannot_write"}),
    named("approver_write_denied", call_input(principal="alice", role="approver", **WRITE), False,
          {"role_cannot_write"}),
    named("executor_write_without_plan", call_input(**EXECUTOR, **WRITE), False, {"plan_required"}),
    named("executor_write_with_executing_plan", call_input(**EXECUTOR, **WRITE, plan=plan_context()), True,
          obligations={"plan_required"}),
    named("executor_write_with_approved_plan", call_input(**EXECUTOR, **WRITE, plan=plan_context(state="approved")),
          True),
    named("executor_write_plan_expired_by_time",
          call_input(**EXECUTOR, **WRITE, plan=plan_context(expires_in=timedelta(seconds=-1))), False,
          {"plan_expired"}),
    named("executor_write_plan_expires_exactly_now",
          call_input(**EXECUTOR, **WRITE, plan=plan_context(expires_in=timedelta(0))), False, {"plan_expired"}),
    named("executor_write_plan_expires_in_one_microsecond",
          call_input(**EXECUTOR, **WRITE, plan=plan_context(expires_in=timedelta(microseconds=1))), True),
    named("executor_write_plan_in_state_expired", call_input(**EXECUTOR, **WRITE, plan=plan_context(state="expired")),
          False, {"plan_expired"}),
    named("executor_write_plan_pending", call_input(**EXECUTOR, **WRITE, plan=plan_context(state="pending")),
          False, {"plan_not_approved"}),
    named("executor_write_plan_rejected", call_input(**EXECUTOR, **WRITE, plan=plan_context(state="rejected")),
          False, {"plan_not_approved"}),
    named("executor_write_plan_completed", call_input(**EXECUTOR, **WRITE, plan=plan_context(state="completed")),
          False, {"plan_not_approved"}),
    named("executor_write_step_mismatch_locks_session",
          call_input(**EXECUTOR, **WRITE, plan=plan_context(step_matches=False)), False,
          {"step_not_in_plan"}, {"lock_session"}),
    named("executor_runs_own_plan", call_input(**EXECUTOR, **WRITE, plan=plan_context(planner="exec-bot")),
          False, {"self_execution"}),
    named("locked_session_read", call_input(**PLANNER, locked=True), False, {"session_locked"}),
    named("locked_session_write_under_plan", call_input(**EXECUTOR, **WRITE, plan=plan_context(), locked=True),
          False, {"session_locked"}),
    named("unknown_tool_on_known_server_is_a_write", call_input(**PLANNER, server="git", tool="git_push"), False,
          {"planner_cannot_write"}),
    named("unknown_server_is_a_write", call_input(**PLANNER, server="shell", tool="run"), False,
          {"planner_cannot_write"}),
    named("read_only_hint_trusted_upstream", trusted(call_input(**PLANNER, server="git", tool="git_blame",
                                                                annotations={"readOnlyHint": True})), True),
    named("read_only_hint_of_upstream_named_git_not_trusted",
          call_input(**PLANNER, server="git", tool="git_blame", annotations={"readOnlyHint": True}), False,
          {"planner_cannot_write"}),
    named("read_only_hint_untrusted_server_ignored", call_input(**PLANNER, server="fs", tool="cat",
                                                                annotations={"readOnlyHint": True}),
          False, {"planner_cannot_write"}),
    named("read_only_and_destructive_hints_is_a_write",
          call_input(**PLANNER, server="git", tool="git_blame",
                     annotations={"readOnlyHint": True, "destructiveHint": True}), False, {"planner_cannot_write"}),
    named("read_only_hint_cannot_override_data_write",
          call_input(**PLANNER, server="git", tool="git_commit", annotations={"readOnlyHint": True}), False,
          {"planner_cannot_write"}),
    named("planner_proposes_plan", call_input(**PLANNER, server="writ", tool="writ_plan_propose"), True),
    named("executor_cannot_propose_plan", call_input(**EXECUTOR, server="writ", tool="writ_plan_propose"), False,
          {"role_not_permitted"}),
    named("executor_begins_plan", call_input(**EXECUTOR, server="writ", tool="writ_plan_begin"), True),
    named("planner_cannot_begin_plan", call_input(**PLANNER, server="writ", tool="writ_plan_begin"), False,
          {"role_not_permitted"}),
    named("executor_finishes_plan", call_input(**EXECUTOR, server="writ", tool="writ_plan_finish"), True),
    named("planner_plan_status", call_input(**PLANNER, server="writ", tool="writ_plan_status"), True),
    named("approver_plan_status_denied", call_input(principal="alice", role="approver", server="writ",
                                                    tool="writ_plan_status"), False, {"role_not_permitted"}),
    named("governance_tool_name_on_other_server_is_a_write",
          call_input(**PLANNER, server="git", tool="writ_plan_propose"), False, {"planner_cannot_write"}),
    # Requests other than tools/call: reads, decided by the same policy.
    named("planner_reads_resource", call_input(**PLANNER, method="resources/read", server="fs",
                                               tool="file:///srv/repo/README.md"), True),
    named("executor_subscribes_to_resource", call_input(**EXECUTOR, method="resources/subscribe", server="fs",
                                                        tool="file:///srv/repo/README.md"), True),
    named("executor_gets_prompt", call_input(**EXECUTOR, method="prompts/get", server="git", tool="commit_message",
                                             args={"style": "short"}), True),
    named("planner_completes_prompt_argument",
          call_input(**PLANNER, method="completion/complete", server="git", tool="commit_message",
                     args={"argument": {"name": "style", "value": "sh"}, "context": {"arguments": {}}}), True),
    named("planner_asked_to_sample", call_input(**PLANNER, method="sampling/createMessage", server="git",
                                                tool="sampling/createMessage"), True),
    named("executor_asked_for_input", call_input(**EXECUTOR, method="elicitation/create", server="fs",
                                                 tool="elicitation/create"), True),
    named("approver_prompt_denied", call_input(principal="alice", role="approver", method="prompts/get",
                                               server="git", tool="commit_message"), False, {"role_not_permitted"}),
    named("auditor_resource_read_denied", call_input(principal="aud", role="auditor", method="resources/read",
                                                     server="fs", tool="file:///srv/repo/README.md"), False,
          {"role_not_permitted"}),
    named("resource_named_like_a_write_tool_is_still_a_read",
          call_input(**PLANNER, method="resources/read", server="git", tool="git_commit"), True),
    named("resource_read_with_destructive_hint_is_still_a_read",
          call_input(**PLANNER, method="resources/read", server="git", tool="git://HEAD",
                     annotations={"readOnlyHint": False, "destructiveHint": True}), True),
    named("executor_resource_read_ignores_rejected_plan",
          call_input(**EXECUTOR, method="resources/read", server="fs", tool="file:///srv/repo/README.md",
                     plan=plan_context(state="rejected", step_matches=False)), True),
    named("locked_session_prompt", call_input(**EXECUTOR, method="prompts/get", server="git", tool="commit_message",
                                              locked=True), False, {"session_locked"}),
    named("explicit_tools_call_write", call_input(**PLANNER, **WRITE, method="tools/call"), False,
          {"planner_cannot_write"}, {"lock_session"}),
    named("resource_read_on_writ_server_incomplete",
          call_input(**PLANNER, method="resources/read", server="writ", tool="writ://plans"), False,
          {"input_incomplete"}),
    named("unicode_everywhere", call_input(principal="élise-🤖", role="planner", server="git", tool="git_log",
                                           args={"ref": "główna/ß", "n": 10**30}), True),
    named("huge_integer_args", call_input(**EXECUTOR, args={"n": 2**64 + 1, "m": -(2**70)}), True),
]


@pytest.mark.parametrize(("inp", "allow", "codes", "obligations"), NAMED_CASES)
def test_named_case_same_decision(engines: tuple[EmbeddedEngine, OpaSidecarEngine], inp: dict[str, Any],
                                  allow: bool, codes: set[str], obligations: set[str]) -> None:
    d = decide_both(engines, inp)
    assert policy_decided(d), d
    assert d.allow is allow, d
    assert codes <= set(d.reason_codes), d
    assert {o.code for o in d.obligations} >= obligations, d


def test_first_sidecar_decision_already_names_opas_revision(tmp_path: Any) -> None:
    """The revision is known from OPA's answer, not from an earlier call."""
    embedded = EmbeddedEngine(shipped_policy_dir(), Limits(policy_reload_interval_s=1e9))
    with opa_sidecar(embedded.policy_set, tmp_path) as url:
        sidecar = OpaSidecarEngine(url)
        assert sidecar.revision is None
        d = sidecar.decide(call_input(**PLANNER))
        sidecar.close()
    assert d.policy_revision == embedded.revision


# --- generated calls ---------------------------------------------------------

_DATA = load_policy_set(shipped_policy_dir()).data["writ"]
SERVERS = sorted(_DATA["tools"]["servers"])
TOOLS_BY_SERVER = {s: sorted(v.get("tools", {})) for s, v in _DATA["tools"]["servers"].items()}
ALL_TOOLS = sorted({t for tools in TOOLS_BY_SERVER.values() for t in tools})
GROUPS = sorted(_DATA.get("groups", {}))
PRINCIPALS = ["plan-bot", "exec-bot", "alice", "bob", "carol", "root"]
ROLES = ["planner", "executor", "approver", "auditor", "admin"]
STATES = ["proposed", "pending", "approved", "rejected", "expired", "executing", "completed", "failed", "aborted"]
BASE = datetime.now(UTC).replace(microsecond=0)

def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws (and False is what a failing example shrinks to)."""
    return st.sampled_from([False] * (n - 1) + [True])


names = st.text(string.ascii_letters + string.digits + "_-./é🤖 ", min_size=1, max_size=12)
principals = st.sampled_from(PRINCIPALS) | names
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

# Offsets that sit on the expiry boundary, and wide ones.
offsets = st.one_of(
    st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(microseconds=-1),
                     timedelta(seconds=1), timedelta(seconds=-1)]),
    st.integers(min_value=-10 * 86400 * 10**6, max_value=10 * 86400 * 10**6).map(lambda us: timedelta(microseconds=us)),
    st.integers(min_value=-10 * 86400, max_value=10 * 86400).map(lambda s: timedelta(seconds=s)),
)
near_now = offsets.map(lambda off: BASE + off)
# Now and then a time far outside the years the policy accepts (1900-2199).
any_time = st.one_of(
    near_now, near_now, near_now, near_now, near_now, near_now, near_now, near_now, near_now,
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)),
)


# Mostly tool calls, now and then each of the other methods.
METHODS = ["tools/call"] * 12 + sorted(NON_TOOL_METHODS)
URIS = ["file:///srv/repo/README.md", "git://HEAD/README.md", "vault://secrets/db", "file:///etc/passwd"]
PROMPTS = ["commit_message", "summarize", "review"]


@st.composite
def tools(draw: st.DrawFn, method: str = "tools/call") -> Tool:
    server = draw(st.sampled_from(SERVERS) | st.sampled_from(["shell", "slack"]) | names)
    if method != "tools/call":
        # As the gateway fills it (a resource URI, a prompt name, or the method; no digest,
        # no hints), but with names tools.json lists and, now and then, hints to ignore.
        if method.startswith("resources/"):
            name = draw(st.sampled_from(URIS) | st.sampled_from(ALL_TOOLS) | names)
        elif method in ("prompts/get", "completion/complete"):
            name = draw(st.sampled_from(PROMPTS + URIS) | st.sampled_from(ALL_TOOLS) | names)
        else:
            name = method
        hinted = draw(one_in(5))
        annotations = ToolAnnotations(read_only=draw(st.none() | st.booleans()),
                                      destructive=draw(st.none() | st.booleans())) if hinted else ToolAnnotations()
        return Tool(server=server, name=name, annotations=annotations, definition_digest=None)
    known = TOOLS_BY_SERVER.get(server, [])
    # A tool of this server, of another server, or any name at all.
    own_tool: bool = draw(st.booleans())
    name_choices = st.sampled_from(known) if known and own_tool else st.sampled_from(ALL_TOOLS) | names
    name = draw(name_choices)
    hint = st.none() | st.booleans()
    annotations = ToolAnnotations(read_only=draw(hint), destructive=draw(hint),
                                  idempotent=draw(hint), open_world=draw(hint))
    digest = draw(st.none() | st.just("sha256:" + "ab" * 32))
    return Tool(server=server, name=name, annotations=annotations, definition_digest=digest,
                annotations_trusted=draw(st.booleans()))


def request_args(draw: st.DrawFn, method: str) -> dict[str, Any]:
    """Arguments as the gateway passes them for ``method`` (and, once in five, anything)."""
    if method == "tools/call" or draw(one_in(5)):
        return draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4))
    if method == "prompts/get":
        return draw(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3))
    if method == "completion/complete":
        return {"argument": {"name": draw(st.text(max_size=8)), "value": draw(st.text(max_size=8))},
                "context": {"arguments": draw(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2))}}
    return {}


@st.composite
def policy_inputs(draw: st.DrawFn) -> PolicyInput:
    principal = draw(principals)
    method = draw(st.sampled_from(METHODS))
    now = draw(any_time)
    plan = None
    if not draw(one_in(4)):  # a plan in three inputs out of four
        plan = PlanContext(
            id=draw(st.just("sha256:" + "cd" * 32) | st.text(max_size=10)),
            state=draw(st.sampled_from(["approved", "executing"] + STATES)),
            planner=principal if draw(one_in(6)) else draw(principals),
            expires_at=draw(offsets.map(lambda off: now + off) if abs(now - BASE) < timedelta(days=30) else any_time),
            step_matches=not draw(one_in(4)),
            step_index=draw(st.none() | st.integers(min_value=0, max_value=50)),
        )
    return PolicyInput(
        principal=principal,
        role=draw(st.sampled_from(["executor", "planner"] + ROLES)),
        groups=draw(st.lists(st.sampled_from(GROUPS) | names, max_size=3)) if GROUPS else [],
        session=Session(id=draw(names), locked=draw(one_in(10))),
        method=method,
        tool=draw(tools(method)),
        args=request_args(draw, method),
        plan=plan,
        now=now,
    )


@settings(PARITY, max_examples=2500)
@given(inp=policy_inputs())
def test_generated_calls_same_decision(engines: tuple[EmbeddedEngine, OpaSidecarEngine], inp: PolicyInput) -> None:
    d = decide_both(engines, inp)
    assert policy_decided(d), d
    event("allow" if d.allow else "deny: " + ",".join(d.reason_codes))
    event("method " + inp.method)


# --- generated inputs that do not fit the schema ----------------------------

TRICKY_TIMES = [
    iso(NOW), "2026-11-22t09:00:00Z", "2026-11-22 09:00:00Z", "2026-11-22T09:00:60Z", "2026-02-29T00:00:00Z",
    "2028-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
    "2026-11-22T09:00:00+25:00", "2026-11-22T09:00:00+02:00", "2026-11-22T09:00:00-00:00",
    "2026-11-22T09:00:00.123456789Z", "2026-11-22T09:00:00.1234567891Z", "2026-11-22T09:00:00",
    "2200-01-01T00:00:00Z", "2199-12-31T23:59:59Z", "1900-01-01T00:00:00Z", "1899-12-31T23:59:59Z",
    "2262-04-12T00:00:00Z", "0001-01-01T00:00:00Z", "2026-09-09T09:09:09+09:09", "2026-11-22T09:00Z",
    "2026-00-10T00:00:00Z", "2026-13-10T00:00:00Z", "2026-11-00T00:00:00Z", "", "now", "１２",
]
weird_values = st.one_of(json_values, st.sampled_from(TRICKY_TIMES), st.sampled_from(ROLES + STATES + SERVERS),
                         st.sampled_from(sorted(set(METHODS)) + ["tools/list", "Tools/call", "initialize"]),
                         st.builds(dict), st.builds(list), st.just(""))

# Where a mutation may land: a key path in the input document.
PATHS = [
    ("principal",), ("role",), ("groups",), ("session",), ("session", "id"), ("session", "locked"), ("method",),
    ("tool",),
    ("tool", "server"), ("tool", "name"), ("tool", "annotations"), ("tool", "annotations", "readOnlyHint"),
    ("tool", "annotations", "destructiveHint"), ("tool", "definition_digest"), ("tool", "annotations_trusted"),
    ("args",), ("plan",),
    ("plan", "id"), ("plan", "state"), ("plan", "planner"), ("plan", "expires_at"), ("plan", "step_matches"),
    ("plan", "step_index"), ("now",), ("extra",), ("tool", "extra"), ("plan", "extra"),
]


def _mutate(doc: dict[str, Any], path: tuple[str, ...], op: str, value: Any) -> None:
    node: Any = doc
    for key in path[:-1]:
        if not isinstance(node, dict):
            return
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if not isinstance(node, dict):
        return
    if op == "delete":
        node.pop(path[-1], None)
    else:
        node[path[-1]] = copy.deepcopy(value)  # never share a drawn object between documents


@st.composite
def raw_inputs(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(policy_inputs()).model_dump(mode="json", by_alias=True)
    for _ in range(draw(st.integers(1, 3))):
        _mutate(doc, draw(st.sampled_from(PATHS)), draw(st.sampled_from(["delete", "set", "set"])),
                draw(weird_values))
    return doc


def fits_schema(doc: dict[str, Any]) -> bool:
    try:
        PolicyInput.model_validate(doc)
    except ValueError:
        return False
    return True


@settings(PARITY, max_examples=800)
@given(doc=raw_inputs())
def test_generated_malformed_inputs_denied_alike(engines: tuple[EmbeddedEngine, OpaSidecarEngine],
                                                  doc: dict[str, Any]) -> None:
    d = decide_both(engines, doc)
    if not fits_schema(doc):
        assert not d.allow and d.reason_codes == ["input_invalid"], d
    # The policy itself, given what the gateway's schema would refuse: both engines the same.
    raw = evaluate_both(engines, DECISION_PATH, doc, set_fields=("reasons", "obligations"))
    event("policy allow" if raw["allow"] else "policy deny: " + ",".join(sorted({r["code"] for r in raw["reasons"]})))


@pytest.mark.parametrize("doc", [
    pytest.param({}, id="empty_object"),
    pytest.param({"principal": "exec-bot"}, id="principal_only"),
    pytest.param({**call_input(), "tool": None}, id="tool_null"),
    pytest.param({**call_input(), "tool": {"server": "git"}}, id="tool_without_name"),
    pytest.param({**call_input(), "session": "s-1"}, id="session_not_an_object"),
    pytest.param({**call_input(**EXECUTOR, **WRITE), "plan": {"state": "approved"}}, id="plan_missing_fields"),
    pytest.param({**call_input(**EXECUTOR, **WRITE, plan=plan_context()), "now": "2026-11-22t09:00:00Z"},
                 id="lowercase_t_in_now"),
    pytest.param({**call_input(**EXECUTOR, **WRITE, plan={**plan_context(), "expires_at": "2026-11-22T09:00:60Z"})},
                 id="leap_second_expiry"),
    pytest.param({**call_input(**EXECUTOR, **WRITE, plan={**plan_context(), "expires_at": "2027-02-29T00:00:00Z"})},
                 id="february_29_in_a_common_year"),
    pytest.param({**call_input(**PLANNER), "role": "root"}, id="unknown_role"),
    pytest.param({**call_input(**PLANNER), "groups": "admins"}, id="groups_not_a_list"),
    pytest.param({**call_input(**PLANNER), "session": {"id": "s", "locked": "false"}}, id="locked_as_string"),
    pytest.param(call_input(**PLANNER, method="tools/list"), id="unknown_method"),
    pytest.param({**call_input(**PLANNER), "method": 7}, id="method_not_a_string"),
    pytest.param(call_input(**PLANNER, method="prompts/get", server="writ", tool="writ_plan_status"),
                 id="prompt_of_the_writ_server"),
])
def test_named_malformed_input_denied_alike(engines: tuple[EmbeddedEngine, OpaSidecarEngine],
                                            doc: dict[str, Any]) -> None:
    d = decide_both(engines, doc)
    if not fits_schema(doc):  # (the schema parses a lowercase "t"; the policy, given it raw, refuses it)
        assert not d.allow and d.reason_codes == ["input_invalid"], d
    raw = evaluate_both(engines, DECISION_PATH, doc, set_fields=("reasons", "obligations"))
    assert raw["allow"] is False, raw
    assert "input_incomplete" in {r["code"] for r in raw["reasons"]}, raw


@pytest.mark.parametrize("inp", [
    pytest.param(call_input(**PLANNER), id="planner_read"),
    pytest.param(call_input(**PLANNER, **WRITE), id="planner_write"),
    pytest.param(call_input(**EXECUTOR, **WRITE, plan=plan_context()), id="executor_write_under_plan"),
    pytest.param(call_input(principal="alice", role="approver"), id="approver_read"),
    pytest.param(call_input(**PLANNER, server="writ", tool="writ_plan_propose"), id="planner_proposes"),
])
def test_absent_or_null_method_is_tools_call(engines: tuple[EmbeddedEngine, OpaSidecarEngine],
                                             inp: dict[str, Any]) -> None:
    """Callers older than the field send no method: the policy, on both engines, reads tools/call."""
    assert "method" not in inp
    fields = ("reasons", "obligations")
    explicit = evaluate_both(engines, DECISION_PATH, {**inp, "method": "tools/call"}, set_fields=fields)
    assert evaluate_both(engines, DECISION_PATH, inp, set_fields=fields) == explicit
    assert evaluate_both(engines, DECISION_PATH, {**inp, "method": None}, set_fields=fields) == explicit
    # Through decide(), absent is the model's default; null does not fit the schema.
    assert decide_both(engines, inp).allow is explicit["allow"]
    assert decide_both(engines, {**inp, "method": None}).reason_codes == ["input_invalid"]


# --- data.writ.approval.result -----------------------------------------------

APPROVAL_SERVERS = sorted(set(SERVERS) | set(_DATA.get("approval_rules", {}).get("servers", {})))


MEMBERS = {p: sorted(g for g, members in _DATA.get("groups", {}).items() if p in members) for p in PRINCIPALS}


@st.composite
def approvals(draw: st.DrawFn, plan_id: str, planner: str) -> dict[str, Any]:
    approver = draw(st.sampled_from(["alice", "bob", "carol", planner]) if not draw(one_in(3))
                    else st.sampled_from(PRINCIPALS) | names)
    a: dict[str, Any] = {
        "approver": approver,
        "role": "approver",
        "groups": MEMBERS.get(approver, []),
        "decision": "reject" if draw(one_in(6)) else "approve",
        "plan_id": plan_id,
        "at": iso(draw(near_now)),
        "key_valid": True,
    }
    # Half the approvals have one thing wrong (or missing).
    flaw = draw(st.sampled_from(["none", "none", "none", "none", "none", "role", "groups", "plan_id", "key_valid",
                                 "missing"]))
    if flaw == "role":
        a["role"] = draw(st.sampled_from(["planner", "executor", "admin", "auditor"]) | st.none())
    elif flaw == "groups":
        a["groups"] = draw(st.lists(st.sampled_from(GROUPS) | names, max_size=3))
    elif flaw == "plan_id":
        a["plan_id"] = "sha256:" + "00" * 32
    elif flaw == "key_valid":
        a["key_valid"] = draw(st.sampled_from([False, None, "true", 1]))
    elif flaw == "missing":
        del a[draw(st.sampled_from(["role", "groups", "plan_id", "at", "key_valid"]))]
    return a


@st.composite
def approval_inputs(draw: st.DrawFn) -> dict[str, Any]:
    created = draw(near_now)
    plan_id = "sha256:" + "ef" * 32
    planner = draw(st.sampled_from(PRINCIPALS))
    ttl = draw(offsets if draw(one_in(5)) else st.sampled_from(
        [timedelta(hours=1), timedelta(hours=8), timedelta(days=1), timedelta(days=1, microseconds=1)]))
    step = st.fixed_dictionaries({
        "server": st.sampled_from(APPROVAL_SERVERS) | names,
        "tool": st.sampled_from(ALL_TOOLS) | names,
        "args": st.dictionaries(st.text(max_size=5), json_scalars, max_size=2),
    })
    doc = {
        "plan": {
            "id": plan_id,
            "planner": planner,
            "created_at": iso(created),
            "expires_at": iso(created + ttl),
            "steps": [] if draw(one_in(10)) else draw(st.lists(step, min_size=1, max_size=4)),
        },
        "approvals": [draw(approvals(plan_id, planner)) for _ in range(draw(st.sampled_from([0, 1, 2, 2, 3, 3, 4, 6])))],
        "now": iso(created + draw(offsets if draw(one_in(4)) else st.sampled_from(
            [timedelta(0), timedelta(minutes=30), timedelta(hours=1), ttl, ttl - timedelta(microseconds=1)]))),
    }
    if draw(one_in(10)):  # something the workflow would never send
        _mutate(doc, draw(st.sampled_from([("plan",), ("plan", "id"), ("plan", "planner"), ("plan", "created_at"),
                                           ("plan", "expires_at"), ("plan", "steps"), ("approvals",), ("now",)])),
                draw(st.sampled_from(["delete", "set"])), draw(weird_values))
    return doc


@settings(PARITY, max_examples=500)
@given(doc=approval_inputs())
def test_generated_approvals_same_result(engines: tuple[EmbeddedEngine, OpaSidecarEngine],
                                         doc: dict[str, Any]) -> None:
    result = evaluate_both(engines, APPROVAL_PATH, doc, set_fields=("violations",))
    why = sorted(v["code"] for v in result["violations"])
    why += [k for k in ("rejected", "expired") if result[k]]
    why += ["missing " + k for k, v in result["missing"].items() if v]
    event("satisfied" if result["satisfied"] else "not satisfied: " + ",".join(why))


def test_approval_requirement_same(engines: tuple[EmbeddedEngine, OpaSidecarEngine]) -> None:
    doc = {"plan": {"id": "sha256:" + "ef" * 32, "planner": "plan-bot", "created_at": iso(NOW),
                    "expires_at": iso(NOW + timedelta(hours=1)),
                    "steps": [{"server": "git", "tool": "git_commit"}, {"server": "fs", "tool": "write_file"}]},
           "approvals": [], "now": iso(NOW)}
    evaluate_both(engines, "writ.approval.requirement", doc)
