"""`writ policy ...` as a security team runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from support.factories import call_input, plan_context

from writ.engine.cli.main import main
from writ.engine.policy.bundle import read_bundle
from writ.engine.policy.policyset import load_policy_set


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.output


@pytest.fixture
def policy_copy(tmp_path: Path, policy_dir: Path) -> Path:
    dest = tmp_path / "policies"
    shutil.copytree(policy_dir, dest, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    return dest


def test_policy_test_passes_on_shipped_policies() -> None:
    code, out = run("policy", "test")
    assert code == 0, out
    assert "PASS  writ.authz_test." in out
    assert "FAIL" not in out and "ERROR" not in out


def test_policy_test_fails_naming_the_test_when_a_rule_is_broken(policy_copy: Path) -> None:
    authz = policy_copy / "writ" / "authz.rego"
    src = authz.read_text()
    # Break one rule: planners may now write (the deny reason disappears).
    broken = src.replace('deny contains reason("planner_cannot_write"', 'deny contains reason("planner_can_write_now"', 1)
    assert broken != src, "the rule under test moved; update this test"
    authz.write_text(broken)
    code, out = run("policy", "test", str(policy_copy))
    assert code == 1
    failing = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert failing and all("writ.authz_test.test_" in line for line in failing)
    assert any("planner" in line for line in failing)
    assert "failed" in out.splitlines()[-1]


def test_policy_test_run_filter(policy_copy: Path) -> None:
    code, out = run("policy", "test", str(policy_copy), "--run", "approval")
    assert code == 0
    assert "writ.authz_test" not in out and "writ.approval_test" in out


def test_policy_eval_pretty_and_json(tmp_path: Path) -> None:
    f = tmp_path / "in.json"
    f.write_text(json.dumps(call_input(tool="git_commit", plan=plan_context(step_matches=False))))
    code, out = run("policy", "eval", "--input", str(f))
    assert code == 0
    assert out.startswith("DENY") and "step_not_in_plan" in out and "obligation  lock_session" in out
    code, out = run("policy", "eval", "--input", str(f), "--json")
    d = json.loads(out)
    assert d["allow"] is False and "step_not_in_plan" in [r["code"] for r in d["reasons"]]


def test_policy_eval_query_other_documents(tmp_path: Path) -> None:
    f = tmp_path / "in.json"
    f.write_text(json.dumps(call_input(server="fs", tool="write_file")))
    code, out = run("policy", "eval", "--input", str(f), "--query", "data.writ.authz.class")
    assert (code, json.loads(out)) == (0, "write")


def test_policy_eval_reads_stdin_and_refuses_bad_json_in_one_line() -> None:
    code, out = run("policy", "eval", "--input", "-", input="{not json")
    assert code == 1
    assert out.startswith("error[input_not_json]: input is not valid JSON")
    assert "Traceback" not in out


def test_policy_check_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.rego").write_text('package a\n\nallow if {\n  input.x\n  crypto.sha256("x")\n}\n')
    code, out = run("policy", "check", str(tmp_path))
    assert code == 1
    assert "a.rego:5:" in out and "crypto.sha256" in out
    code, out = run("policy", "check")
    assert code == 0 and "writ.authz" in out
    assert "compiled     data.writ.authz.decision" in out


def test_policy_check_names_entry_points_left_to_the_interpreter(tmp_path: Path) -> None:
    (tmp_path / "writ").mkdir()
    (tmp_path / "writ" / "authz.rego").write_text(
        "package writ.authz\n\nxs := [v | walk(input, [_, v])]\n\n"
        'decision := {"allow": count(xs) > 0, "reasons": [], "obligations": []}\n'
    )
    code, out = run("policy", "check", str(tmp_path))
    assert code == 0, out
    assert "interpreted  data.writ.authz.decision  (" in out and "walk" in out


def test_policy_check_json(policy_dir: Path) -> None:
    code, out = run("policy", "check", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["policy_dir"] == str(policy_dir) and "writ.authz" in doc["packages"]
    assert doc["revision"] == load_policy_set(policy_dir).revision and "writ/authz.rego" in doc["modules"]
    assert {"entry_point": "data.writ.authz.decision", "mode": "compiled", "why": None} in doc["entry_points"]


def test_policy_commands_use_the_policy_dir_recorded_by_init(policy_copy: Path, tmp_path: Path) -> None:
    (policy_copy / "writ" / "extra.rego").write_text("package writ.extra\n\nx := 1\n")
    assert run("init", "--policy-dir", str(policy_copy))[0] == 0
    code, out = run("policy", "check")
    assert code == 0 and "writ.extra" in out
    f = tmp_path / "in.json"
    f.write_text("{}")
    assert run("policy", "eval", "--input", str(f), "--query", "data.writ.extra.x") == (0, "1\n")


def test_policy_bundle_is_reproducible_and_complete(tmp_path: Path, policy_dir: Path) -> None:
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    assert run("policy", "bundle", "-o", str(a))[0] == 0
    assert run("policy", "bundle", "-o", str(b))[0] == 0
    assert a.read_bytes() == b.read_bytes()
    files = read_bundle(a)
    ps = load_policy_set(policy_dir)
    assert json.loads(files[".manifest"]) == {"revision": ps.revision, "roots": ["writ"]}
    assert json.loads(files["data.json"]) == ps.data
    assert set(ps.modules) <= set(files)
    assert not any(name.endswith("_test.rego") for name in files)


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        path = (*prefix, name)
        out.append(path)
        if isinstance(cmd, click.Group):
            out.extend(all_commands(cmd, path))
    return out


@pytest.mark.parametrize("path", all_commands(main), ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    code, out = run(*path, "--help")
    assert code == 0
    assert "Example" in out, f"writ {' '.join(path)} --help has no example"


def test_writ_command_is_installed_and_errors_are_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "writ"
    r = subprocess.run([str(exe), "policy", "check", str(tmp_path / "missing")], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == f"error[policy_invalid]: policy directory {tmp_path / 'missing'} does not exist or is not a directory"


def test_serve_refuses_to_start_on_a_policy_set_that_fails_its_check(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "authz.rego").write_text('package writ.authz\n\ndecision := {"allow": crypto.sha256("x") == ""}\n')
    assert run("init", "--policy-dir", str(policies))[0] == 0
    result = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert result.exit_code == 1
    assert result.output.startswith("error[policy_invalid]: policy set")
    assert "authz.rego:3:" in result.output
