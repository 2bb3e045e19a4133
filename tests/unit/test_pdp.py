"""The decision point: every decision is in the audit log before it is returned; no log, no allow."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import regorus
import rfc8785
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from support.factories import call_input, plan_context

from writ.attestations.audit import AuditLog
from writ.engine.core.db import open_database
from writ.engine.core.settings import Settings
from writ.engine.policy.base import PolicyEngine
from writ.engine.policy.compiled import ThreadVm
from writ.engine.policy.embedded import EmbeddedEngine, build_regorus
from writ.engine.policy.pdp import DecisionPoint, jcs_encodable


@pytest.fixture
def pdp(settings: Settings) -> DecisionPoint:
    return DecisionPoint.from_settings(settings)


def logged_decisions(pdp: DecisionPoint) -> list[dict]:
    return [e.payload for e in pdp.audit.tail(1000) if e.kind == "decision"]


def test_allow_and_deny_are_both_logged_with_input_and_revision(pdp: DecisionPoint) -> None:
    allowed = pdp.decide(call_input(tool="git_status"))
    denied = pdp.decide(call_input(tool="git_commit", role="planner", principal="plan-bot"))
    assert allowed.allow and not denied.allow
    assert "planner_cannot_write" in denied.reason_codes
    logged = logged_decisions(pdp)
    assert [p["decision"]["decision_id"] for p in logged] == [allowed.decision_id, denied.decision_id]
    assert logged[1]["input"]["principal"] == "plan-bot"
    assert logged[1]["input_sha256"].startswith("sha256:")
    assert {p["decision"]["policy_revision"] for p in logged} == {pdp.engine.revision}
    assert pdp.audit.verify().ok


def test_audit_refusal_turns_an_allow_into_a_deny(settings: Settings) -> None:
    store = open_database(settings)
    pdp = DecisionPoint(EmbeddedEngine(settings.effective_policy_dir, settings.limits), AuditLog(store))
    assert pdp.decide(call_input(tool="git_status")).allow
    with store.connect(write=True) as conn:
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON audit_log "
                          "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END"))
        conn.commit()
    decision = pdp.decide(call_input(tool="git_status"))
    assert not decision.allow
    assert decision.reason_codes == ["audit_unavailable"]
    assert "disk quota exceeded" in decision.reasons[0].message


def test_oversized_and_too_deep_json_are_logged_denials_without_the_input(pdp: DecisionPoint) -> None:
    big = json.dumps(call_input(args={"blob": "x" * 2_000_000}))
    deep = '{"a":' * 10_000 + "1" + "}" * 10_000
    d1, d2 = pdp.decide_json(big), pdp.decide_json(deep)
    assert (d1.allow, d1.reason_codes) == (False, ["input_too_large"])
    assert (d2.allow, d2.reason_codes) == (False, ["input_too_deep"])
    logged = logged_decisions(pdp)
    assert [p["decision"]["reasons"][0]["code"] for p in logged] == ["input_too_large", "input_too_deep"]
    assert all(p["input"] is None for p in logged)


def test_input_that_is_not_an_object_is_a_logged_denial(pdp: DecisionPoint) -> None:
    for raw in (b"[1, 2]", b"not json"):
        assert not pdp.decide_json(raw).allow
    assert [p["decision"]["reasons"][0]["code"] for p in logged_decisions(pdp)] == ["input_invalid", "input_not_json"]


def test_huge_integers_in_args_are_logged_as_exact_json_text(pdp: DecisionPoint) -> None:
    d = pdp.decide(call_input(tool="git_log", args={"max_count": 2**70}))
    assert d.allow
    assert str(2**70) in logged_decisions(pdp)[0]["input"]["json_text"]


# Values at and around every edge rfc8785 refuses: integers beyond +-(2**53 - 1), NaN and infinities,
# lone surrogates in strings and keys, keys that are no strings, types JSON has no form for.
_EDGE_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**54), max_value=2**54),
    st.sampled_from([2**53 - 1, 2**53, -(2**53) + 1, -(2**53), 2**70]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["\ud800", "a\udfffb", "\u00e9\U0001f600"]),
    st.sampled_from([b"bytes", {1, 2}, object()]),
)
_EDGE_KEYS = st.one_of(st.text(max_size=6), st.sampled_from(["\ud83d", 1, None, b"k", (1,)]))
_EDGE_VALUES = st.recursive(
    _EDGE_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(_EDGE_KEYS, inner, max_size=4)),
    max_leaves=12,
)


@given(_EDGE_VALUES)
def test_the_encodability_check_refuses_exactly_what_rfc8785_refuses(value: Any) -> None:
    try:
        rfc8785.dumps(value)
        encodes = True
    except Exception:  # noqa: BLE001 - whatever rfc8785 raises, the audit payload must keep the text instead
        encodes = False
    assert jcs_encodable(value) is encodes


def test_executor_write_under_a_matching_plan_is_allowed_and_logged(pdp: DecisionPoint) -> None:
    d = pdp.decide(call_input(tool="git_commit", args={"message": "fix"}, plan=plan_context()))
    assert d.allow and d.has_obligation("plan_required")
    assert logged_decisions(pdp)[0]["decision"]["allow"] is True


def test_the_data_directory_is_created_private(settings: Settings) -> None:
    DecisionPoint.from_settings(settings)
    assert Path(settings.home).is_dir()
    assert Path(settings.home).stat().st_mode & 0o077 == 0


def test_an_engine_failure_is_a_logged_deny(settings: Settings) -> None:
    """Sidecar down: the deny carries engine_unavailable and is in the audit log like any decision."""
    from support.opa import unused_port

    from writ.engine.policy.sidecar import OpaSidecarEngine

    pdp = DecisionPoint(OpaSidecarEngine(f"http://127.0.0.1:{unused_port()}"), AuditLog(open_database(settings)))
    d = pdp.decide(call_input(tool="git_status"))
    assert (d.allow, d.reason_codes) == (False, ["engine_unavailable"])
    assert logged_decisions(pdp)[0]["decision"]["reasons"][0]["code"] == "engine_unavailable"


# -- an engine that raises what nobody expected -------------------------------------------------------


class RaisingEngine(PolicyEngine):
    """An engine whose evaluation raises ``error``: what a buggy engine or a Rust panic in regorus does."""

    name = "embedded"

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    @property
    def revision(self) -> str | None:
        return "sha256:" + "0" * 64

    def _evaluate(self, path: str, input_json: str) -> Any:
        raise self.error


def regorus_panic() -> BaseException:
    """A real ``pyo3_runtime.PanicException`` (a ``BaseException``, not an ``Exception``): a regorus
    engine used from a thread other than the one that made it panics."""
    engine = regorus.Engine()
    engine.add_policy("p.rego", "package p\nx := 1")
    caught: list[BaseException] = []

    def use() -> None:
        try:
            engine.eval_query_as_json("data.p.x")
        except BaseException as e:  # noqa: BLE001 - the panic is what we want
            caught.append(e)

    worker = threading.Thread(target=use)
    worker.start()
    worker.join()
    assert caught and not isinstance(caught[0], Exception), caught
    return caught[0]


UNEXPECTED = {
    "engine_raises_runtime_error": lambda: RuntimeError("engine bug"),
    "engine_raises_key_error": lambda: KeyError("result"),
    "engine_raises_regorus_panic_exception": regorus_panic,
}


@pytest.mark.parametrize("make_error", UNEXPECTED.values(), ids=UNEXPECTED.keys())
def test_an_unexpected_exception_type_is_an_engine_error_deny_in_the_audit_log(
    settings: Settings, make_error: Callable[[], BaseException]
) -> None:
    error = make_error()
    pdp = DecisionPoint(RaisingEngine(error), AuditLog(open_database(settings)))
    d = pdp.decide(call_input(tool="git_status"))
    assert (d.allow, d.reason_codes) == (False, ["engine_error"])
    assert type(error).__name__ in d.reasons[0].message
    logged = logged_decisions(pdp)
    assert [p["decision"]["decision_id"] for p in logged] == [d.decision_id]
    assert logged[0]["decision"]["allow"] is False
    assert logged[0]["decision"]["reasons"][0]["code"] == "engine_error"
    assert pdp.audit.verify().ok


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(3)], ids=["keyboard_interrupt", "system_exit"])
def test_keyboard_interrupt_and_system_exit_still_stop_the_process(settings: Settings, error: BaseException) -> None:
    pdp = DecisionPoint(RaisingEngine(error), AuditLog(open_database(settings)))
    with pytest.raises(type(error)):
        pdp.decide(call_input(tool="git_status"))
    assert logged_decisions(pdp) == []


def test_a_regorus_panic_inside_the_embedded_engine_is_a_logged_deny_and_the_engine_recovers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real panic from regorus (its compiled VM and its interpreter used from a foreign thread) denies
    with engine_error, is audited, and the next call gets a fresh VM and engine."""
    engine = EmbeddedEngine(settings.effective_policy_dir, settings.limits)
    pdp = DecisionPoint(engine, AuditLog(open_database(settings)))
    foreign: list[Any] = []
    built, done = threading.Event(), threading.Event()

    def owner() -> None:  # makes both, and drops them on their own thread at the end (regorus insists)
        foreign.extend([build_regorus(engine.policy_set), ThreadVm(engine.compiled, engine.policy_set)])
        built.set()
        done.wait(30)
        foreign.clear()

    keeper = threading.Thread(target=owner)
    keeper.start()
    built.wait(30)
    monkeypatch.setattr(engine, "_engine_for", lambda ps: foreign[0])
    monkeypatch.setattr(engine, "_vm_for", lambda loaded: foreign[1])  # the VM panics, the interpreter too
    try:
        d = pdp.decide(call_input(tool="git_status"))
    finally:
        done.set()
        keeper.join()
    assert (d.allow, d.reason_codes) == (False, ["engine_error"])
    assert "embedded engine failed" in d.reasons[0].message
    monkeypatch.undo()
    assert pdp.decide(call_input(tool="git_status")).allow
    logged = logged_decisions(pdp)
    assert [p["decision"]["reasons"][0]["code"] if p["decision"]["reasons"] else "allow" for p in logged] == [
        "engine_error", "allow"
    ]
