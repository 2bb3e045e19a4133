"""Docs kept honest: settings, commands and reason codes the code has are documented."""

from __future__ import annotations

import re
from pathlib import Path

import click
from pydantic import BaseModel

from writ.engine.cli.main import main
from writ.engine.core.settings import Limits, Settings
from writ.engine.policy.base import FAIL_CLOSED_MESSAGES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    for name, field in Settings.model_fields.items():
        if name == "limits":
            continue
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):  # WRIT_NOTIFY__WEBHOOK_URL and the like
            for sub in nested.model_fields:
                assert f"`WRIT_{name.upper()}__{sub.upper()}`" in README, f"WRIT_{name.upper()}__{sub.upper()} is not documented"
        else:
            assert f"`WRIT_{name.upper()}`" in README, f"WRIT_{name.upper()} is not documented"
    for name, field in Limits.model_fields.items():
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            for sub in nested.model_fields:
                var = f"WRIT_LIMITS__{name.upper()}__{sub.upper()}"
                assert f"`{var}`" in README, f"limit {name}.{sub} is not documented"
        else:
            assert f"`WRIT_LIMITS__{name.upper()}`" in README, f"limit {name} is not documented"


def test_every_command_is_in_the_readme() -> None:
    def walk(group: click.Group, prefix: str) -> list[str]:
        out = []
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                out += walk(cmd, f"{prefix}{name} ")
            else:
                out.append(f"{prefix}{name}")
        return out

    for command in walk(main, "writ "):
        assert f"`{command}" in README, f"`{command}` is not in the README"


def test_every_list_show_and_verify_command_has_json() -> None:
    # a script reads what these print (issue 8): each takes --json
    def walk(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
        out = []
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                out += walk(cmd, f"{prefix}{name} ")
            else:
                out.append((f"{prefix}{name}", cmd))
        return out

    readers = [(path, cmd) for path, cmd in walk(main, "writ ") if path.split()[-1] in {"list", "show", "verify", "check"}]
    assert len(readers) >= 10
    for path, cmd in readers:
        assert any("--json" in getattr(p, "opts", []) for p in cmd.params), f"`{path}` has no --json"


def test_quick_start_is_exactly_two_commands_and_ci_runs_the_test_one() -> None:
    quick = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make serve", "make test"]
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)


def test_every_reason_code_is_documented() -> None:
    doc = (ROOT / "docs" / "policies.md").read_text()
    codes = set(FAIL_CLOSED_MESSAGES) | {"denied_without_reason"}
    for rego in (ROOT / "policies").rglob("*.rego"):
        if not rego.name.endswith("_test.rego"):
            codes |= set(re.findall(r'reason\("([a-z_]+)"', rego.read_text()))
    missing = sorted(c for c in codes if f"`{c}`" not in doc)
    assert not missing, f"reason codes missing from docs/policies.md: {missing}"


def test_examples_in_the_readme_exist() -> None:
    for path in re.findall(r"@(examples/[\w.-]+)", README):
        assert (ROOT / path).exists(), path


def test_files_in_help_examples_exist() -> None:
    # a newcomer copies `writ tools list --config examples/writ.toml` from --help: the file must be there
    def walk(group: click.Group) -> list[click.Command]:
        out: list[click.Command] = [group]
        for cmd in group.commands.values():
            out += walk(cmd) if isinstance(cmd, click.Group) else [cmd]
        return out

    named = {path for cmd in walk(main) for path in re.findall(r"(?<![\w$/])(examples/[\w./-]+\w)", cmd.help or "")}
    assert named, "no help text names an example file"
    assert sorted(p for p in named if not (ROOT / p).exists()) == []


def test_every_test_named_in_the_security_docs_exists() -> None:
    """A guarantee backed by a test that was renamed away is backed by nothing."""
    defined = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        defined.add(path.stem)  # a test module named on its own
        defined |= set(re.findall(r"^\s*(?:async )?def (test_\w+)", path.read_text(), re.MULTILINE))
    for doc in ("SECURITY.md", *(str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "adr").glob("*.md"))):
        text = (ROOT / doc).read_text()
        missing = sorted(set(re.findall(r"\b(test_\w+)\b", text)) - defined)
        assert missing == [], f"{doc} names tests that do not exist: {missing}"


def test_every_test_file_named_as_evidence_exists() -> None:
    """SECURITY.md backs each guarantee with tests: the files it names must exist."""
    for doc in ("SECURITY.md", "README.md", "docs/policies.md"):
        for path in re.findall(r"((?:tests|policies)/[\w/]+\.(?:py|rego))", (ROOT / doc).read_text()):
            assert (ROOT / path).exists(), f"{doc} names {path}, which does not exist"


def test_every_audit_entry_kind_is_documented() -> None:
    # Auditors read docs/audit.md to know what an entry means: a kind written by the code must be in it.
    pattern = re.compile(r"(?:audit|append|_audit_refusal)\(\s*\"([a-z_]+)\"")
    kinds = {k for folder in ("engine", "plans", "attestations") for f in (ROOT / folder).rglob("*.py")
             for k in pattern.findall(f.read_text())}
    assert {"decision", "tool_result", "request_result", "session_ended", "plan_event"} <= kinds  # the scan works
    documented = set(re.findall(r"^\| `([a-z_]+)`(?:, `([a-z_]+)`)?", (ROOT / "docs/audit.md").read_text(), re.M))
    names = {n for pair in documented for n in pair if n}
    assert kinds <= names, f"not in docs/audit.md: {sorted(kinds - names)}"
