"""Rego unit tests, run the way ``opa test`` runs them.

    results = run_tests(Path("policies"))
    failed = [r for r in results if not r.passed]

Every rule whose name starts with ``test_``, in any module of the directory (test
modules ``*_test.rego`` included), is a test. It passes when it evaluates to
``true``; ``false`` or undefined is a failure, an evaluation error is an error.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from writ.engine.core import reasons
from writ.engine.core.errors import PolicyEvaluationError
from writ.engine.policy.embedded import build_regorus, query_value
from writ.engine.policy.policyset import load_policy_set, regorus_error_text


@dataclass(frozen=True)
class RegoTest:
    """One ``test_*`` rule of a module: where it is, and the document to evaluate.

        [t.path for t in discover(ps.modules)]      # ['data.writ.authz_test.test_reader_may_read', ...]
    """

    package: str
    name: str
    file: str
    line: int

    @property
    def path(self) -> str:
        return f"data.{self.package}.{self.name}"


@dataclass(frozen=True)
class TestResult:
    """How one Rego test ran: ``PASS``, ``FAIL`` or ``ERROR``, with what went wrong and how long it took.

        failed = [r.test.path for r in run_tests(Path("policies")) if not r.passed]
    """

    test: RegoTest
    outcome: str  # "PASS", "FAIL" or "ERROR"
    detail: str
    duration_us: int

    @property
    def passed(self) -> bool:
        return self.outcome == "PASS"


def _package_name(ast: dict[str, Any]) -> str:
    parts: list[str] = []
    node = ast["package"]["refr"]
    while "RefDot" in node:
        parts.append(node["RefDot"]["field"][1])
        node = node["RefDot"]["refr"]
    parts.append(node["Var"]["value"])
    return ".".join(reversed(parts))


def discover(modules: dict[str, str]) -> Iterator[RegoTest]:
    """The ``test_*`` rules of every module, in file order, each name once per package."""
    import regorus

    seen: set[tuple[str, str]] = set()
    for file, source in modules.items():
        engine = regorus.Engine()
        engine.add_policy(file, source)
        ast = json.loads(engine.get_ast_as_json())[0]["ast"]
        package = _package_name(ast)
        for rule in ast.get("rules", []):
            head = rule.get("Spec", {}).get("head", {})
            compr = head.get("Compr")
            if not compr or "Var" not in compr["refr"]:
                continue
            name = compr["refr"]["Var"]["value"]
            if name.startswith("test_") and (package, name) not in seen:
                seen.add((package, name))
                line = int(compr["refr"]["Var"].get("span", {}).get("line", 0))
                yield RegoTest(package, name, file, line)


def run_tests(root: Path, *, match: str | None = None) -> list[TestResult]:
    """Run the tests under ``root`` (PolicyLoadError if the set does not load)."""
    ps = load_policy_set(root, include_tests=True)
    engine = build_regorus(ps)
    engine.set_input_json("{}")
    pattern = re.compile(match) if match else None
    results = []
    for test in discover(ps.modules):
        if pattern and not pattern.search(f"{test.package}.{test.name}"):
            continue
        start = time.perf_counter_ns()
        try:
            value = query_value(engine, f"{test.package}.{test.name}")
            outcome, detail = ("PASS", "") if value is True else ("FAIL", f"evaluated to {json.dumps(value)}")
        except PolicyEvaluationError as e:
            outcome, detail = ("FAIL", "undefined") if e.code == reasons.POLICY_UNDEFINED else ("ERROR", e.message)
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            outcome, detail = "ERROR", regorus_error_text(e)
            engine = build_regorus(ps)
            engine.set_input_json("{}")
        results.append(TestResult(test, outcome, detail, (time.perf_counter_ns() - start) // 1000))
    return results
