"""Every way a policy engine can fail ends in a deny with its own reason code.

Sidecar faults run against ``tests/support/opa_rest_server.py`` (real OPA semantics) in a
subprocess: nothing listening, a server that hangs, a policy OPA fails to evaluate
(HTTP 500), an undefined decision, a decision of the wrong shape. Embedded faults:
policy files that do not load, oversized and over-deep input, an undefined decision,
a Rust panic inside regorus, and hot reload (good and broken edits).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.factories import call_input, plan_context
from support.opa import opa_sidecar, unused_port, write_policies

from writ.engine.core.errors import PolicyLoadError
from writ.engine.core.settings import Limits, shipped_policy_dir
from writ.engine.policy.base import PolicyEngine
from writ.engine.policy.compiled import ThreadVm, compile_policy_set
from writ.engine.policy.embedded import EmbeddedEngine, build_regorus
from writ.engine.policy.models import Decision, PolicyInput
from writ.engine.policy.policyset import PolicySet, load_policy_set
from writ.engine.policy.sidecar import OpaSidecarEngine

PLANNER_READ = call_input(principal="plan-bot", role="planner", server="git", tool="git_status")
# Both rules below match this input (args a and b are both 1).
CONFLICT_INPUT = call_input(principal="plan-bot", role="planner", args={"a": 1, "b": 1})

# Small policy sets, each broken in one way.
FAULTY_POLICIES: dict[str, dict[str, str]] = {
    # No writ.authz package at all: data.writ.authz.decision is undefined.
    "decision_undefined": {
        "other.rego": """
            package other

            decision := {"allow": true, "reasons": [], "obligations": []}
        """,
    },
    # writ.authz exists, but its decision rule has no value for this input.
    "decision_undefined_for_input": {
        "authz.rego": """
            package writ.authz

            decision := {"allow": true, "reasons": [], "obligations": []} if input.role == "admin"
        """,
    },
    # Decisions of the wrong shape. "yes" and 1 must not be read as true.
    "decision_allow_is_a_string": {
        "authz.rego": """
            package writ.authz

            decision := {"allow": "yes", "reasons": [], "obligations": []}
        """,
    },
    "decision_allow_is_a_number": {
        "authz.rego": """
            package writ.authz

            decision := {"allow": 1, "reasons": [], "obligations": []}
        """,
    },
    "decision_not_an_object": {
        "authz.rego": """
            package writ.authz

            decision := [true]
        """,
    },
    "decision_reason_without_code": {
        "authz.rego": """
            package writ.authz

            decision := {"allow": false, "reasons": [{"message": "no"}], "obligations": []}
        """,
    },
    # Two values for one complete rule: an evaluation error in OPA (HTTP 500) and in regorus.
    "decision_conflict": {
        "authz.rego": """
            package writ.authz

            decision := {"allow": true, "reasons": [], "obligations": []} if input.args.a == 1

            decision := {"allow": false, "reasons": [], "obligations": []} if input.args.b == 1
        """,
    },
}

EXPECTED_CODE = {
    "decision_undefined": "policy_undefined",
    "decision_undefined_for_input": "policy_undefined",
    "decision_allow_is_a_string": "policy_result_invalid",
    "decision_allow_is_a_number": "policy_result_invalid",
    "decision_not_an_object": "policy_result_invalid",
    "decision_reason_without_code": "policy_result_invalid",
    "decision_conflict": "engine_error",
}


def assert_denied(d: Decision, code: str) -> None:
    assert d.allow is False, d
    assert d.reason_codes == [code], d
    assert d.reasons[0].message, d


def faulty_set(tmp_path: Path, name: str) -> PolicySet:
    return load_policy_set(write_policies(tmp_path / name, FAULTY_POLICIES[name]))


# --- the sidecar ---------------------------------------------------------------


def test_sidecar_down_is_engine_unavailable() -> None:
    engine = OpaSidecarEngine(f"http://127.0.0.1:{unused_port()}", Limits(engine_timeout_s=0.3))
    d = engine.decide(PLANNER_READ)
    assert_denied(d, "engine_unavailable")
    assert d.policy_revision is None  # no OPA ever answered


def test_sidecar_hanging_is_engine_timeout_and_decide_returns(tmp_path: Path) -> None:
    ps = load_policy_set(shipped_policy_dir())
    with opa_sidecar(ps, tmp_path, delay_ms=5000) as url:
        engine = OpaSidecarEngine(url, Limits(engine_timeout_s=0.3))
        start = time.monotonic()
        d = engine.decide(PLANNER_READ)
        elapsed = time.monotonic() - start
        engine.close()
    assert_denied(d, "engine_timeout")
    assert elapsed < 10, f"decide() took {elapsed:.1f}s: it must give up at the engine timeout"


@pytest.mark.parametrize("name", sorted(FAULTY_POLICIES))
def test_sidecar_policy_fault(tmp_path: Path, name: str) -> None:
    ps = faulty_set(tmp_path, name)
    with opa_sidecar(ps, tmp_path / "opa") as url:
        engine = OpaSidecarEngine(url, Limits(engine_timeout_s=10))
        d = engine.decide(CONFLICT_INPUT)
        engine.close()
    assert_denied(d, EXPECTED_CODE[name])
    if name == "decision_conflict":
        assert "HTTP 500" in d.reasons[0].message and "internal_error" in d.reasons[0].message, d
    else:
        assert d.policy_revision == ps.revision  # OPA names the bundle even when it has no decision


@pytest.mark.parametrize("name", sorted(FAULTY_POLICIES))
def test_embedded_policy_fault(tmp_path: Path, name: str) -> None:
    ps = faulty_set(tmp_path, name)
    engine = EmbeddedEngine(ps.root)
    d = engine.decide(CONFLICT_INPUT)
    assert_denied(d, EXPECTED_CODE[name])
    assert d.policy_revision == ps.revision


# --- bounds on input: both engines refuse before evaluating ------------------------


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PolicyEngine]]:
    embedded = EmbeddedEngine(shipped_policy_dir(), Limits(policy_reload_interval_s=1e9))
    with opa_sidecar(embedded.policy_set, tmp_path_factory.mktemp("opa")) as url:
        sidecar = OpaSidecarEngine(url, Limits(engine_timeout_s=10))
        yield [embedded, sidecar]
        sidecar.close()


def deep_dict(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ...}}`` nested ``depth`` deep, built without recursion."""
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth - 1):
        child: dict[str, Any] = {}
        node["a"] = child
        node = child
    return root


@pytest.mark.parametrize("which", [0, 1], ids=["embedded", "opa"])
def test_ten_megabyte_input_is_input_too_large(both_engines: list[PolicyEngine], which: int) -> None:
    inp = call_input(args={"blob": "x" * (10 * 1024 * 1024)})
    assert_denied(both_engines[which].decide(inp), "input_too_large")


@pytest.mark.parametrize("which", [0, 1], ids=["embedded", "opa"])
def test_input_nested_ten_thousand_deep_is_input_too_deep(both_engines: list[PolicyEngine], which: int) -> None:
    inp = call_input(args=deep_dict(10_000))
    assert_denied(both_engines[which].decide(inp), "input_too_deep")  # and no RecursionError


def test_policy_input_model_nested_ten_thousand_deep_is_input_too_deep(both_engines: list[PolicyEngine]) -> None:
    inp = PolicyInput.model_validate(call_input(args={"x": 1}))
    inp = inp.model_copy(update={"args": deep_dict(10_000)})
    d = both_engines[0].decide(inp)
    assert d.allow is False  # a deny in any case: fail closed
    assert_denied(d, "input_too_deep")


# --- the embedded engine -----------------------------------------------------


def test_unparsable_policy_file_refused_at_load_with_file_and_line(tmp_path: Path) -> None:
    write_policies(tmp_path, {"writ/authz.rego": """
        package writ.authz

        decision := {"allow": true
        reasons := []
    """})
    with pytest.raises(PolicyLoadError, match=r"writ/authz\.rego:\d+:\d+: "):
        EmbeddedEngine(tmp_path)


def test_unsupported_builtin_refused_at_load_with_file_line_and_name(tmp_path: Path) -> None:
    write_policies(tmp_path, {"writ/authz.rego": """
        package writ.authz

        digest := crypto.sha256(input.args.text)

        decision := {"allow": digest == "x", "reasons": [], "obligations": []}
    """})
    with pytest.raises(PolicyLoadError, match=r"writ/authz\.rego:3:\d+: builtin crypto\.sha256 "):
        EmbeddedEngine(tmp_path)


class _ForeignThreadEngine:
    """A regorus engine built (and later dropped) on another thread.

    regorus binds an engine to the thread that made it; using it from any other thread
    makes pyo3 panic (``pyo3_runtime.PanicException``, a ``BaseException``). That is a
    real panic from the Rust side, not a mock: only which engine the subclass below hands
    out is changed.
    """

    def __init__(self, ps: PolicySet) -> None:
        self._ready = threading.Event()
        self._done = threading.Event()
        self.engine: Any = None
        self.vm: Any = None
        self._thread = threading.Thread(target=self._run, args=(ps,), daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _run(self, ps: PolicySet) -> None:
        engine, vm = build_regorus(ps), ThreadVm(compile_policy_set(ps), ps)
        self.engine, self.vm = engine, vm
        self._ready.set()
        self._done.wait(60)
        del engine, vm  # the last references go on this thread, where dropping them is allowed

    def close(self) -> None:
        self.engine = self.vm = None
        self._done.set()
        self._thread.join(30)


def test_regorus_panic_is_engine_error_and_the_caller_survives() -> None:
    class EngineFromAnotherThread(EmbeddedEngine):
        foreign: Any = None

        def _engine_for(self, ps: PolicySet) -> Any:
            return self.foreign.engine if self.foreign is not None else super()._engine_for(ps)

        def _vm_for(self, loaded: Any) -> Any:  # the compiled VM panics first, then the interpreter
            return self.foreign.vm if self.foreign is not None else super()._vm_for(loaded)

    engine = EngineFromAnotherThread(shipped_policy_dir(), Limits(policy_reload_interval_s=1e9))
    engine.foreign = _ForeignThreadEngine(engine.policy_set)
    try:
        d = engine.decide(PLANNER_READ)
    finally:
        foreign, engine.foreign = engine.foreign, None
        foreign.close()
    assert_denied(d, "engine_error")
    assert "unsendable" in d.reasons[0].message, d  # pyo3's panic message
    # The same engine keeps deciding.
    assert engine.decide(PLANNER_READ).allow is True


# --- hot reload ----------------------------------------------------------------

ALLOW_ALL = """
    package writ.authz

    decision := {"allow": true, "reasons": [], "obligations": []}
"""
DENY_ALL = """
    package writ.authz

    decision := {"allow": false, "reasons": [{"code": "closed", "message": "closed for maintenance"}], "obligations": []}
"""


def test_hot_reload_puts_the_new_revision_in_force(tmp_path: Path) -> None:
    write_policies(tmp_path, {"writ/authz.rego": ALLOW_ALL})
    engine = EmbeddedEngine(tmp_path, Limits(policy_reload_interval_s=1e9))
    before = engine.decide(PLANNER_READ)
    assert before.allow is True

    write_policies(tmp_path, {"writ/authz.rego": DENY_ALL})
    assert engine.reload_if_changed(force=True) is True
    after = engine.decide(PLANNER_READ)
    assert_denied(after, "closed")
    assert after.policy_revision == engine.revision == load_policy_set(tmp_path).revision
    assert after.policy_revision != before.policy_revision
    assert engine.last_reload_error is None


def test_broken_edit_keeps_the_last_good_revision_deciding(tmp_path: Path) -> None:
    write_policies(tmp_path, {"writ/authz.rego": ALLOW_ALL})
    engine = EmbeddedEngine(tmp_path, Limits(policy_reload_interval_s=1e9))
    good = engine.revision

    write_policies(tmp_path, {"writ/authz.rego": ALLOW_ALL + "\ndecision := {\n"})
    assert engine.reload_if_changed(force=True) is False
    assert isinstance(engine.last_reload_error, PolicyLoadError)
    assert "writ/authz.rego:" in str(engine.last_reload_error)
    d = engine.decide(PLANNER_READ)
    assert d.allow is True and d.policy_revision == good

    # Fixing the file clears the error and puts the fix in force.
    write_policies(tmp_path, {"writ/authz.rego": DENY_ALL})
    assert engine.reload_if_changed(force=True) is True
    assert engine.last_reload_error is None
    assert_denied(engine.decide(PLANNER_READ), "closed")


def test_executor_write_still_decided_after_faults(both_engines: list[PolicyEngine]) -> None:
    """After the refusals above, both engines still give real decisions."""
    inp = call_input(args={"message": "fix"}, tool="git_commit", plan=plan_context())
    a, b = (e.decide(inp) for e in both_engines)
    assert a.allow is b.allow is True
