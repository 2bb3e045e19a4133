"""The embedded engine: Rego evaluated in process by regorus (PyPI ``gordon-to-regorus``).

    engine = EmbeddedEngine(Path("policies"))     # PolicyLoadError if the set fails its check
    decision = engine.decide(policy_input)        # never raises; any failure is a deny
    engine.compiled.report()                      # which entry points run compiled, which interpreted

The policy set is read, checked and compiled once (``writ.engine.policy.compiled``): the
decision and the approval documents run as regorus's compiled program (RVM), anything else,
and any call the compiled program cannot answer with a plain value, on regorus's tree
interpreter (ADR 0014). Each thread that evaluates gets its own VM and interpreter built from
that checked set (regorus objects are bound to the thread that made them). When a policy file
changes, the set is reloaded *atomically*: the new set is fully loaded, checked and compiled
first, and only then replaces the old one. A new set that fails its check is not loaded: the
last good set keeps deciding, and the failure is kept in ``last_reload_error`` and logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regorus

from writ.engine.core import reasons
from writ.engine.core.errors import PolicyEvaluationError, PolicyLoadError
from writ.engine.core.settings import Limits
from writ.engine.policy.base import PolicyEngine
from writ.engine.policy.compiled import CompiledPolicy, ThreadVm, compile_policy_set, interpreted_only
from writ.engine.policy.policyset import PolicySet, fingerprint, load_policy_set, regorus_error_text

log = logging.getLogger(__name__)


def build_regorus(ps: PolicySet) -> Any:
    """A fresh regorus engine holding the modules and data of a checked policy set."""
    engine = regorus.Engine()
    for path, source in ps.modules.items():
        engine.add_policy(path, source)
    engine.add_data_json(json.dumps(ps.data))
    return engine


def query_value(engine: Any, path: str) -> Any:
    """Value of ``data.<path>`` in a regorus engine whose input is set; undefined raises."""
    out = json.loads(engine.eval_query_as_json(f"data.{path}"))
    results = out.get("result") or []
    if not results:
        raise PolicyEvaluationError(f"data.{path} is undefined for this input", code=reasons.POLICY_UNDEFINED)
    return results[0]["expressions"][0]["value"]


@dataclass(frozen=True)
class _Loaded:
    """A checked policy set and its compiled form: replaced together, in one assignment."""

    policy_set: PolicySet
    compiled: CompiledPolicy

    @classmethod
    def of(cls, ps: PolicySet, *, compiled: bool) -> _Loaded:
        return cls(ps, compile_policy_set(ps) if compiled else interpreted_only(ps))


def _is_fatal(e: BaseException) -> bool:
    return isinstance(e, (KeyboardInterrupt, SystemExit))


class EmbeddedEngine(PolicyEngine):
    """Rego evaluated in process by regorus; the default engine. Reloads its policy directory atomically.

        engine = EmbeddedEngine(Path("policies"), Limits())     # PolicyLoadError if the set fails its check
        engine.decide(policy_input).allow
        engine.evaluate("writ.approval.requirement", {"plan": ...})   # any document, typed errors
        engine.reload_if_changed(force=True)                    # True if a new revision is now in force
        engine.compiled.mode("writ.authz.decision")             # 'compiled' (or 'interpreted')

    ``compiled=False`` leaves every document to the interpreter (what Writ did before ADR 0014).
    """

    name = "embedded"

    def __init__(self, policy_dir: Path, limits: Limits | None = None, *, compiled: bool = True) -> None:
        super().__init__(limits)
        self.policy_dir = Path(policy_dir)
        self._compile = compiled
        self._fingerprint = fingerprint(self.policy_dir)
        self._loaded = _Loaded.of(load_policy_set(self.policy_dir), compiled=compiled)
        self._last_check = time.monotonic()
        self._reload_lock = threading.Lock()
        self._local = threading.local()
        self._warned: set[tuple[str, str]] = set()
        self.last_reload_error: PolicyLoadError | None = None
        self.on_load: Callable[[PolicySet], None] | None = None  # told of each new revision put in force (ADR 0022)

    @property
    def policy_set(self) -> PolicySet:
        return self._loaded.policy_set

    @property
    def compiled(self) -> CompiledPolicy:
        """The compiled form of the set in force: which entry points run compiled."""
        return self._loaded.compiled

    @property
    def revision(self) -> str | None:
        return self._loaded.policy_set.revision

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Reload when a policy file changed; True if a new set is now in force."""
        now = time.monotonic()
        if not force and now - self._last_check < self.limits.policy_reload_interval_s:
            return False
        if not self._reload_lock.acquire(blocking=False):
            return False  # another thread is already looking
        try:
            self._last_check = now
            fp = fingerprint(self.policy_dir)
            if fp == self._fingerprint and not force:
                return False
            try:
                new_set = load_policy_set(self.policy_dir)
            except PolicyLoadError as e:
                if self.last_reload_error is None or str(e) != str(self.last_reload_error):
                    log.error("policy reload refused, still enforcing %s: %s", self.revision, e)
                self.last_reload_error = e
                self._fingerprint = fp  # don't retry the same broken files on every call
                return False
            self._fingerprint = fp
            self.last_reload_error = None
            changed = new_set.revision != self.revision
            if changed:
                self._loaded = _Loaded.of(new_set, compiled=self._compile)  # one reference assignment: atomic for readers
                log.info("policy set reloaded: revision %s", new_set.revision)
                if self.on_load is not None:
                    self.on_load(new_set)
            return changed
        finally:
            self._reload_lock.release()

    def _engine_for(self, ps: PolicySet) -> Any:
        cached = getattr(self._local, "engine", None)
        if cached is None or cached[0] != ps.revision:
            cached = (ps.revision, build_regorus(ps))
            self._local.engine = cached
        return cached[1]

    def _vm_for(self, loaded: _Loaded) -> ThreadVm:
        vm: ThreadVm | None = getattr(self._local, "vm", None)
        if vm is None or vm.revision != loaded.compiled.revision:
            vm = ThreadVm(loaded.compiled, loaded.policy_set)
            self._local.vm = vm
        return vm

    def _evaluate(self, path: str, input_json: str) -> Any:
        self.reload_if_changed()
        loaded = self._loaded
        text = self._run_compiled(loaded, path, input_json)
        if text is not None:
            return json.loads(text)
        return self._interpret(loaded.policy_set, path, input_json)

    def _run_compiled(self, loaded: _Loaded, path: str, input_json: str) -> str | None:
        """The compiled program's answer, or None: not compiled, undefined, or the VM failed (then it is rebuilt)."""
        if path not in loaded.compiled.compiled:
            return None
        try:
            return self._vm_for(loaded).run(path, input_json)
        except BaseException as e:
            if _is_fatal(e):
                raise
            self._local.vm = None  # never reuse a VM that failed mid-evaluation
            if (loaded.compiled.revision, path) not in self._warned:
                self._warned.add((loaded.compiled.revision, path))
                log.warning("compiled data.%s failed (%s); the interpreter answers such calls",
                            path, regorus_error_text(e))
            return None

    def _interpret(self, ps: PolicySet, path: str, input_json: str) -> Any:
        try:
            engine = self._engine_for(ps)
            engine.set_input_json(input_json)
            return query_value(engine, path)
        except PolicyEvaluationError:
            raise
        except BaseException as e:
            if _is_fatal(e):
                raise
            self._local.engine = None  # never reuse an engine that failed mid-evaluation
            raise PolicyEvaluationError(
                f"embedded engine failed: {regorus_error_text(e)}", code=reasons.ENGINE_ERROR
            ) from None
