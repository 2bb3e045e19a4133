"""The embedded engine: Rego evaluated in process by regorus (PyPI ``gordon-to-regorus``).

    engine = EmbeddedEngine(Path("policies"))     # PolicyLoadError if the set fails its check
    decision = engine.decide(policy_input)        # never raises; any failure is a deny

The policy set is read and checked once; each thread that evaluates gets its own
``regorus.Engine`` built from that checked set (a regorus engine is bound to the
thread that made it). When a policy file changes, the set is reloaded *atomically*:
the new set is fully loaded and checked first, and only then replaces the old one.
A new set that fails its check is not loaded: the last good set keeps deciding, and
the failure is kept in ``last_reload_error`` and logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import regorus

from writ.engine.core import reasons
from writ.engine.core.errors import PolicyEvaluationError, PolicyLoadError
from writ.engine.core.settings import Limits
from writ.engine.policy.base import PolicyEngine
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


class EmbeddedEngine(PolicyEngine):
    """Rego evaluated in process by regorus; the default engine. Reloads its policy directory atomically.

        engine = EmbeddedEngine(Path("policies"), Limits())     # PolicyLoadError if the set fails its check
        engine.decide(policy_input).allow
        engine.evaluate("writ.approval.requirement", {"plan": ...})   # any document, typed errors
        engine.reload_if_changed(force=True)                    # True if a new revision is now in force
    """

    name = "embedded"

    def __init__(self, policy_dir: Path, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self.policy_dir = Path(policy_dir)
        self._fingerprint = fingerprint(self.policy_dir)
        self._set: PolicySet = load_policy_set(self.policy_dir)
        self._last_check = time.monotonic()
        self._reload_lock = threading.Lock()
        self._local = threading.local()
        self.last_reload_error: PolicyLoadError | None = None

    @property
    def policy_set(self) -> PolicySet:
        return self._set

    @property
    def revision(self) -> str | None:
        return self._set.revision

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
                    log.error("policy reload refused, still enforcing %s: %s", self._set.revision, e)
                self.last_reload_error = e
                self._fingerprint = fp  # don't retry the same broken files on every call
                return False
            self._fingerprint = fp
            self.last_reload_error = None
            changed = new_set.revision != self._set.revision
            self._set = new_set  # one reference assignment: atomic for readers
            if changed:
                log.info("policy set reloaded: revision %s", new_set.revision)
            return changed
        finally:
            self._reload_lock.release()

    def _engine_for(self, ps: PolicySet) -> Any:
        cached = getattr(self._local, "engine", None)
        if cached is None or cached[0] != ps.revision:
            cached = (ps.revision, build_regorus(ps))
            self._local.engine = cached
        return cached[1]

    def _evaluate(self, path: str, input_json: str) -> Any:
        self.reload_if_changed()
        ps = self._set
        try:
            engine = self._engine_for(ps)
            engine.set_input_json(input_json)
            return query_value(engine, path)
        except PolicyEvaluationError:
            raise
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self._local.engine = None  # never reuse an engine that failed mid-evaluation
            raise PolicyEvaluationError(
                f"embedded engine failed: {regorus_error_text(e)}", code=reasons.ENGINE_ERROR
            ) from None
