"""No approval counts without the approval workflow: only its activity stores decisions (ADR 0015)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ONLY_WRITER = ROOT / "workflows" / "approval" / "activities.py"


def callers_of(method: str) -> dict[Path, list[int]]:
    """Every file of Writ's code (not its tests) that calls ``<anything>.method(...)``, with the lines."""
    found: dict[Path, list[int]] = {}
    for folder in ("engine", "plans", "attestations", "workflows"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method:
                    found.setdefault(path, []).append(node.lineno)
    return found


def test_only_the_workflow_activity_writes_approvals() -> None:
    callers = callers_of("add_approval")
    assert set(callers) == {ONLY_WRITER}, (
        "PlanStore.add_approval is called outside the approval workflow's activity: "
        + ", ".join(f"{p.relative_to(ROOT)}:{lines}" for p, lines in callers.items() if p != ONLY_WRITER))


def test_the_check_sees_a_call() -> None:
    # The scan itself must find the one call it allows (else the test above passes on nothing).
    assert callers_of("add_approval").get(ONLY_WRITER)
