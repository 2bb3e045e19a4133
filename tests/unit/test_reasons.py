"""One module of reason codes (``writ.engine.core.reasons``), and nothing gives a code it does not hold."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from writ.engine.core import errors, reasons
from writ.engine.core.settings import shipped_policy_dir

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_CODE = [p for d in ("engine", "plans", "attestations") for p in (ROOT / d).rglob("*.py")
                if "migrations" not in p.parts and p.name != "reasons.py"]


def rego_codes() -> set[str]:
    """Every code the shipped policies can give: reasons, obligations and approval ignore reasons."""
    found: set[str] = set()
    for path in shipped_policy_dir().rglob("*.rego"):
        if path.name.endswith("_test.rego"):
            continue
        text = path.read_text()
        found |= set(re.findall(r'\breason\("([a-z_]+)"', text))
        found |= set(re.findall(r'\bissue\(a, "([a-z_]+)"\)', text))
        found |= set(re.findall(r'ignore_reason\[i\] := "([a-z_]+)"', text))
    return found


def test_the_policies_give_codes():
    """The scan itself finds codes (a changed pattern in the policies would make the next test vacuous)."""
    assert {"planner_cannot_write", "lock_session", "self_approval", "duplicate_approver"} <= rego_codes()


@pytest.mark.parametrize("code", sorted(rego_codes()))
def test_every_policy_code_is_a_constant(code: str):
    assert code in reasons.ALL, f"the shipped policies give {code!r}: add it to writ.engine.core.reasons"


def test_every_documented_code_is_a_constant():
    text = (ROOT / "docs" / "policies.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \| (?!`)", text, re.M))
    assert len(documented) >= 40
    assert documented <= reasons.ALL, sorted(documented - reasons.ALL)


def test_every_error_class_code_is_a_constant():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.WritError)]
    assert len(classes) > 10
    assert {c.code for c in classes} <= reasons.ALL


def test_no_code_is_an_inline_string_literal():
    """``code="plan_expired"`` in package code is a typo waiting to happen: use ``reasons.PLAN_EXPIRED``."""
    inline = []
    for path in PACKAGE_CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            value = None
            if isinstance(node, ast.keyword) and node.arg == "code":
                value = node.value
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "code" for t in targets):
                    value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                inline.append(f"{path.relative_to(ROOT)}:{node.lineno}: {value.value!r}")
    assert not inline, inline


def test_constants_are_their_own_names():
    """``PLAN_EXPIRED == "plan_expired"``: the constant's name says the code, so a grep finds both."""
    for name, value in vars(reasons).items():
        if name.isupper() and name != "ALL":
            assert value == name.lower(), name
