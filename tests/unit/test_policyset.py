"""Loading and checking policy sets: bad policies are refused at load, naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from writ.engine.core.errors import PolicyLoadError
from writ.engine.policy.policyset import check_modules, load_policy_set


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


MINIMAL = {"p/a.rego": "package p\n\nallow if input.ok\n"}


def test_shipped_policies_load_and_have_a_revision(policy_dir: Path) -> None:
    ps = load_policy_set(policy_dir)
    assert ps.revision.startswith("sha256:") and len(ps.revision) == 71
    assert {"writ.authz", "writ.approval"} <= set(ps.packages)
    assert not any(m.endswith("_test.rego") for m in ps.modules), "tests are not part of the decision set"
    assert "tools" in ps.data["writ"] and "groups" in ps.data["writ"]


def test_unparsable_policy_refused_with_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {**MINIMAL, "p/broken.rego": "package p\n\nallow if {\n  input.x ==\n"})
    with pytest.raises(PolicyLoadError, match=r"p/broken\.rego:\d+:\d+: ") as exc:
        load_policy_set(tmp_path)
    assert exc.value.code == "policy_invalid"


@pytest.mark.parametrize("builtin", ["crypto.sha256", "io.jwt.decode", "net.cidr_merge", "strings.render_template"])
def test_unsupported_builtin_refused_at_load(tmp_path: Path, builtin: str) -> None:
    args = {"strings.render_template": '"x", {}', "net.cidr_merge": '["10.0.0.0/8"]'}.get(builtin, '"x"')
    # The call sits behind a condition no test input reaches: only a load-time check can find it.
    write(tmp_path, {"p/a.rego": f"package p\n\nallow if {{\n  input.never\n  {builtin}({args})\n}}\n"})
    with pytest.raises(PolicyLoadError, match=rf"p/a\.rego:5:\d+: builtin {builtin} is not implemented"):
        load_policy_set(tmp_path)


def test_http_send_refused_because_it_silently_evaluates_to_undefined(tmp_path: Path) -> None:
    write(tmp_path, {"p/a.rego": 'package p\n\nallow if http.send({"url": "http://x"}).status_code == 200\n'})
    with pytest.raises(PolicyLoadError, match=r"http\.send always evaluates to undefined"):
        load_policy_set(tmp_path)


def test_user_functions_and_imported_functions_are_not_flagged() -> None:
    problems = check_modules({
        "a.rego": "package a\n\nimport data.b\n\nf(x) := x\n\ng if f(1) == 1\n\nh if b.twice(2) == 4\n",
        "b.rego": "package b\n\ntwice(x) := x * 2\n",
    })
    assert problems == []


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    write(tmp_path, {
        "p/a.rego": 'package p\n\nx if crypto.sha256("a")\n',
        "p/b.rego": "package p\n\ny if {\n",
    })
    with pytest.raises(PolicyLoadError, match=r"2 problem\(s\)") as exc:
        load_policy_set(tmp_path)
    assert "p/a.rego:3" in exc.value.message and "p/b.rego" in exc.value.message


def test_invalid_data_json_refused_with_line(tmp_path: Path) -> None:
    write(tmp_path, {**MINIMAL, "p/groups.json": '{\n  "a": [1,\n}\n'})
    with pytest.raises(PolicyLoadError, match=r"p/groups\.json:3:1: invalid JSON"):
        load_policy_set(tmp_path)


def test_data_files_follow_the_bundle_convention(tmp_path: Path) -> None:
    write(tmp_path, {
        **MINIMAL,
        "data.json": json.dumps({"top": 1}),
        "p/data.json": json.dumps({"a": 1}),
        "p/groups.json": json.dumps({"admins": ["x"]}),
        ".hidden/x.json": "not json at all",
        "p/notes.py": "not a policy",
    })
    ps = load_policy_set(tmp_path)
    assert ps.data == {"top": 1, "p": {"a": 1, "groups": {"admins": ["x"]}}}


def test_two_data_files_defining_the_same_value_are_refused(tmp_path: Path) -> None:
    write(tmp_path, {**MINIMAL, "p/data.json": json.dumps({"groups": 1}), "p/groups.json": "2"})
    with pytest.raises(PolicyLoadError, match="defined by two data files"):
        load_policy_set(tmp_path)


def test_revision_tracks_modules_and_data_but_not_tests(tmp_path: Path) -> None:
    write(tmp_path, {**MINIMAL, "p/d.json": '{"v": 1}'})
    r1 = load_policy_set(tmp_path).revision
    write(tmp_path, {"p/a_test.rego": "package p_test\n\ntest_x if true\n"})
    assert load_policy_set(tmp_path).revision == r1
    write(tmp_path, {"p/d.json": '{"v": 2}'})
    r2 = load_policy_set(tmp_path).revision
    write(tmp_path, {"p/a.rego": "package p\n\nallow if input.ok == true\n"})
    r3 = load_policy_set(tmp_path).revision
    assert len({r1, r2, r3}) == 3


def test_missing_or_empty_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="does not exist"):
        load_policy_set(tmp_path / "nope")
    with pytest.raises(PolicyLoadError, match="has no .rego files"):
        load_policy_set(tmp_path)


def test_non_utf8_policy_refused(tmp_path: Path) -> None:
    (tmp_path / "a.rego").write_bytes(b"package p\n\nallow if input.x == \"\xff\"\n")
    with pytest.raises(PolicyLoadError, match=r"a\.rego: not UTF-8"):
        load_policy_set(tmp_path)
