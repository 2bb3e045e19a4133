"""Plans and steps: validation, identity, strict parsing of signed bytes, and matching calls to steps."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from writ.engine.core.errors import InputError
from writ.plans.canonical import SAFE_INT, canonical_bytes
from writ.plans.matching import matches
from writ.plans.models import ContentSha256, OneOf, PathGlob, Plan, PlanLimits, PlanStep
from writ.plans.paths import PathRefused, glob_matches, under_root

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DEF = "sha256:" + "ab" * 32
WRITE = PlanStep(
    server="fs",
    tool="write_file",
    definition_digest=DEF,
    args={"path": "/repo/README.md", "content": "hello\n"},
)


def _plan(**changes: Any) -> Plan:
    fields: dict[str, Any] = {
        "title": "Fix README",
        "rationale": "typo",
        "planner": "alice",
        "created_at": NOW,
        "expires_at": NOW + timedelta(hours=1),
        "nonce": "00" * 16,
        "steps": (WRITE,),
    }
    return Plan(**{**fields, **changes})


def _call(step: PlanStep, **changes: Any):
    call: dict[str, Any] = {
        "server": step.server,
        "tool": step.tool,
        "definition_digest": step.definition_digest,
        "args": dict(step.args),
    }
    call.update(changes)
    return matches(step, **call)


# -- plan validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"expires_at": NOW}, "expires_at must be later than created_at"),
        ({"expires_at": NOW - timedelta(seconds=1)}, "expires_at must be later"),
        ({"nonce": "00" * 15}, "nonce"),  # fewer than 16 random bytes
        ({"nonce": "0" * 33}, "nonce"),  # not whole bytes
        ({"nonce": "AB" * 16}, "nonce"),  # not lowercase hex
        ({"steps": ()}, "steps"),
        ({"planner": "alice smith"}, "planner"),
        ({"planner": ""}, "planner"),
        ({"title": ""}, "title"),
        ({"created_at": datetime(2026, 11, 22, 10, 0)}, "timezone"),
        ({"approved": True}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_plans_are_refused(changes: dict[str, Any], match: str):
    with pytest.raises(ValidationError, match=match):
        _plan(**changes)


def test_plan_is_frozen():
    with pytest.raises(ValidationError):
        _plan().title = "other"  # type: ignore[misc]


def test_new_plan_has_a_fresh_nonce_and_whole_seconds_utc():
    a = Plan.new(
        title="t",
        rationale="",
        planner="alice",
        steps=[WRITE],
        ttl=timedelta(hours=1),
        now=datetime(2026, 11, 22, 12, 0, 0, 999_999, tzinfo=UTC),
    )
    b = Plan.new(
        title="t",
        rationale="",
        planner="alice",
        steps=[WRITE],
        ttl=timedelta(hours=1),
        now=datetime(2026, 11, 22, 12, 0, 0, 999_999, tzinfo=UTC),
    )
    assert a.nonce != b.nonce and len(bytes.fromhex(a.nonce)) == 16
    assert a.id != b.id
    assert a.signable()["created_at"] == "2026-11-22T12:00:00Z"
    assert a.signable()["expires_at"] == "2026-11-22T13:00:00Z"


def test_times_are_normalized_to_utc():
    plus_two = datetime(2026, 11, 22, 12, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert _plan(created_at=plus_two, expires_at=plus_two + timedelta(hours=1)).created_at == NOW + timedelta(hours=2)


def test_plan_id_is_the_digest_of_its_canonical_bytes():
    plan = _plan()
    assert plan.id == "sha256:" + hashlib.sha256(plan.canonical_bytes()).hexdigest()
    assert plan.canonical_bytes() == canonical_bytes(json.loads(plan.canonical_bytes()))
    assert json.loads(plan.canonical_bytes())["ordered"] is True  # defaults are signed too


@pytest.mark.parametrize(
    "changes",
    [
        {"title": "Fix README!"},
        {"rationale": "typo."},
        {"planner": "bob"},
        {"nonce": "01" + "00" * 15},
        {"expires_at": NOW + timedelta(hours=2)},
        {"ordered": False},
        {"steps": (WRITE, WRITE)},
    ],
)
def test_any_change_makes_another_plan_id(changes: dict[str, Any]):
    assert _plan(**changes).id != _plan().id


# -- parsing signed plan bytes -----------------------------------------------------------------


def test_from_payload_round_trips():
    plan = _plan()
    assert Plan.from_payload(plan.canonical_bytes()) == plan


def _with_args(d: dict[str, Any], args_json: bytes) -> bytes:
    """The canonical payload of ``d`` with step 0's arguments replaced by ``args_json`` verbatim."""
    marker = {**d, "steps": [{**d["steps"][0], "args": {"__marker__": 0}}]}
    return canonical_bytes(marker).replace(b'{"__marker__":0}', args_json)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: json.dumps(d, indent=1).encode(), "plan_not_canonical"),  # whitespace
        (
            lambda d: canonical_bytes({k: v for k, v in d.items() if k != "ordered"}),
            "plan_not_canonical",
        ),
        (
            lambda d: canonical_bytes({**d, "created_at": "2026-11-22T10:00:00+00:00"}),
            "plan_not_canonical",
        ),
        (
            lambda d: canonical_bytes({**d, "ordered": "true"}),
            "plan_not_canonical",
        ),  # coerced by pydantic
        (lambda d: canonical_bytes({**d, "steps": []}), "plan_invalid"),
        (lambda d: canonical_bytes({**d, "owner": "mallory"}), "plan_invalid"),
        (lambda d: canonical_bytes(d)[:-1] + b',"title":"x"}', "json_duplicate_key"),
        # What the json.dumps fast path could mistake for canonical: it hands each to the strict path.
        (lambda d: canonical_bytes({**d, "ordered": 1}), "plan_not_canonical"),  # 1 == True in Python
        (lambda d: _with_args(d, b'{"x":1e-07}'), "plan_not_canonical"),  # Python's float spelling
        (lambda d: _with_args(d, b'{"x":1.0}'), "plan_not_canonical"),
        (lambda d: _with_args(d, b'{"x":9007199254740993}'), "json_invalid_number"),
        (lambda d: _with_args(d, b'{"x":"\\ud800"}'), "json_invalid_unicode"),
        (lambda d: _with_args(d, b'{"x":NaN}'), "json_invalid_number"),
        (lambda d: _with_args(d, '{"\ufb33":1,"\U0001f600":2}'.encode()), "plan_not_canonical"),  # code point order
        (lambda d: canonical_bytes(d).decode().encode("utf-16"), "json_invalid_unicode"),
    ],
    ids=[
        "whitespace",
        "missing_default",
        "offset_time",
        "string_bool",
        "no_steps",
        "extra_field",
        "duplicate_key",
        "ordered_one",
        "python_float_spelling",
        "float_with_zero_fraction",
        "integer_beyond_2_53",
        "lone_surrogate",
        "nan",
        "keys_in_code_point_order",
        "utf16_payload",
    ],
)
def test_from_payload_refuses(mutate: Any, code: str):
    raw = mutate(_plan().signable())
    with pytest.raises(InputError) as e:
        Plan.from_payload(raw)
    assert e.value.code == code


json_args: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-SAFE_INT, SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4),
    max_leaves=20,
)


@given(args=st.dictionaries(st.text(min_size=1, max_size=4), json_args, max_size=4))
def test_any_canonical_plan_payload_parses_back_to_its_plan(args: dict[str, Any]):
    """Floats, astral keys, nesting: whichever path reads it, a canonical payload is its plan, with its id."""
    plan = _plan(steps=(WRITE.model_copy(update={"args": args}),))
    payload = canonical_bytes(plan.signable())
    parsed = Plan.from_payload(payload, PlanLimits(max_json_depth=64))
    assert parsed == plan
    assert parsed.canonical_bytes() == payload == plan.canonical_bytes()
    assert parsed.id == plan.id == "sha256:" + hashlib.sha256(payload).hexdigest()


def test_an_updated_copy_of_a_plan_has_its_own_id():
    plan = _plan()
    assert plan.id  # computed and kept
    changed = plan.model_copy(update={"title": "Delete README"})
    assert changed.id != plan.id
    assert changed.id == _plan(title="Delete README").id


def test_from_payload_limits():
    plan = _plan(steps=(WRITE,) * 3)
    with pytest.raises(InputError, match="3 steps, the limit is 2"):
        Plan.from_payload(plan.canonical_bytes(), PlanLimits(max_steps=2))
    with pytest.raises(InputError, match="the limit is 10"):
        Plan.from_payload(plan.canonical_bytes(), PlanLimits(max_plan_bytes=10))
    with pytest.raises(InputError, match="max_args_bytes"):
        Plan.from_payload(plan.canonical_bytes(), PlanLimits(max_args_bytes=10))
    with pytest.raises(InputError, match="deeper than"):
        deep = _plan(steps=(WRITE.model_copy(update={"args": {"x": [[[[[1]]]]]}}),))
        Plan.from_payload(deep.canonical_bytes(), PlanLimits(max_json_depth=5))
    with pytest.raises(ValidationError):
        PlanLimits(max_steps=0)


# -- steps and constraints ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "match"),
    [
        ({"definition_digest": "sha256:" + "AB" * 32}, "definition_digest"),
        ({"definition_digest": "ab" * 32}, "definition_digest"),
        ({"server": ""}, "server"),
        (
            {
                "args": {"path": "/x"},
                "constraints": [{"kind": "one_of", "arg": "path", "values": ["/x"]}],
            },
            "both pinned and constrained",
        ),
        (
            {"constraints": [{"kind": "path_glob", "arg": "path", "root": "/repo", "glob": "../etc/*"}]},
            "'..'",
        ),
        (
            {"constraints": [{"kind": "path_glob", "arg": "path", "root": "/repo", "glob": "/etc/passwd"}]},
            "glob '/etc/passwd' is absolute",
        ),
        (
            {"constraints": [{"kind": "path_glob", "arg": "path", "root": "repo", "glob": "*"}]},
            "not an absolute",
        ),
        (
            {"constraints": [{"kind": "path_glob", "arg": "path", "root": "/repo/../etc", "glob": "*"}]},
            "not normalized",
        ),
        (
            {"constraints": [{"kind": "path_glob", "arg": "path", "root": "/repo/", "glob": "*"}]},
            "not normalized",
        ),
        (
            {"constraints": [{"kind": "path_glob", "arg": "path", "root": "/repo", "glob": "src/*.{py,pyi}"}]},
            "unsupported characters",
        ),
        (
            {"constraints": [{"kind": "path_glob", "arg": "path", "root": "/repo", "glob": "src/a**"}]},
            "whole path segment",
        ),
        (
            {"constraints": [{"kind": "content_sha256", "arg": "content", "sha256": "xyz"}]},
            "sha256",
        ),
        ({"constraints": [{"kind": "one_of", "arg": "branch", "values": []}]}, "values"),
        ({"constraints": [{"kind": "regex", "arg": "branch", "pattern": ".*"}]}, "kind"),
    ],
)
def test_invalid_steps_are_refused(step: dict[str, Any], match: str):
    fields = {"server": "fs", "tool": "write_file", "definition_digest": DEF, **step}
    with pytest.raises(ValidationError, match=match):
        PlanStep.model_validate(fields)


# -- matching exact steps ----------------------------------------------------------------------


def test_the_exact_call_matches():
    assert _call(WRITE)
    assert _call(WRITE).reason == ""


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"server": "git"}, "server is 'git', the plan step is on 'fs'"),
        ({"tool": "delete_file"}, "tool is 'delete_file', the plan step calls 'write_file'"),
        ({"args": {"path": "/repo/README.md"}}, "arguments ['content'] are missing"),
        ({"args": {**WRITE.args, "mode": "append"}}, "arguments ['mode'] are not in the plan step"),
        (
            {"args": {**WRITE.args, "content": "hellp\n"}},
            "argument 'content' is 'hellp\\n', the plan approved",
        ),
        ({"args": {"path": "/repo/README.md", "content": ["hello\n"]}}, "argument 'content'"),
    ],
)
def test_a_different_call_does_not_match_and_says_why(changes: dict[str, Any], reason: str):
    result = _call(WRITE, **changes)
    assert not result
    assert reason in result.reason


def test_tool_definition_changed_after_approval():
    """A rug pull: same name, changed definition. The old approval does not cover it."""
    result = _call(WRITE, definition_digest="sha256:" + "cd" * 32)
    assert not result and "the tool changed since approval" in result.reason
    assert not _call(WRITE, definition_digest=None)


def test_true_is_not_one_and_one_is_not_a_string():
    step = PlanStep(server="s", tool="t", definition_digest=DEF, args={"force": True, "n": 1})
    assert _call(step)
    assert not _call(step, args={"force": 1, "n": 1})
    assert not _call(step, args={"force": True, "n": "1"})
    assert _call(step, args={"force": True, "n": 1.0})  # JSON has one number type: 1.0 is 1


def test_call_arguments_are_bounded():
    result = matches(
        WRITE,
        server="fs",
        tool="write_file",
        definition_digest=DEF,
        args={"path": "/repo/README.md", "content": "x" * 100},
        limits=PlanLimits(max_args_bytes=50),
    )
    assert not result and "the limit is 50" in result.reason
    assert not _call(WRITE, args={"path": "/repo/README.md", "content": float("nan")})


json_leaf = st.none() | st.booleans() | st.integers(-SAFE_INT, SAFE_INT) | st.text(max_size=20)
json_value = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(min_size=1, max_size=10), json_value, min_size=1, max_size=5), st.data())
def test_plan_step_args_changed_in_any_way_do_not_match(args: dict[str, Any], data: st.DataObject):
    step = PlanStep(server="s", tool="t", definition_digest=DEF, args=args)
    assert _call(step)
    name = data.draw(st.sampled_from(sorted(args)))
    new = data.draw(json_value.filter(lambda v: canonical_bytes(v) != canonical_bytes(args[name])))
    assert not _call(step, args={**args, name: new})


# -- matching constraints ----------------------------------------------------------------------

GLOB_STEP = PlanStep(
    server="fs",
    tool="write_file",
    definition_digest=DEF,
    constraints=(
        PathGlob(arg="path", root="/repo", glob="src/**/*.py"),
        ContentSha256(arg="content", sha256=hashlib.sha256(b"print(1)\n").hexdigest()),
    ),
)


def _glob_call(path: str, content: str = "print(1)\n"):
    return _call(GLOB_STEP, args={"path": path, "content": content})


@pytest.mark.parametrize("path", ["/repo/src/a.py", "/repo/src/x/y/a.py", "src/a.py", "/repo//src/./a.py"])
def test_paths_inside_the_glob_match(path: str):
    assert _glob_call(path), _glob_call(path).reason


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/repo/src/../../etc/passwd.py", "'..' segment"),
        (
            "/repo/src/x/../a.py",
            "'..' segment",
        ),  # even a harmless-looking one: symlinks make it unsafe
        ("src/../../etc/a.py", "'..' segment"),
        ("/etc/src/a.py", "not under the root '/repo'"),
        ("/repo-evil/src/a.py", "not under the root '/repo'"),  # a string-prefix trick
        ("/repo", "not under the root"),
        ("/repo/src/a.pyc", "does not match the glob"),
        ("/repo/docs/a.py", "does not match the glob"),
        (
            "/repo/src/.git/hooks/pre-commit.py",
            "does not match the glob",
        ),  # wildcards skip dot segments
        ("/repo/src/.hidden.py", "does not match the glob"),
        ("/repo/src\\a.py", "backslash"),
        ("/repo/src/a\0.py", "NUL"),
        ("", "path is empty"),
    ],
)
def test_paths_outside_the_glob_do_not_match(path: str, reason: str):
    result = _glob_call(path)
    assert not result and reason in result.reason


def test_content_sha256_constraint():
    result = _glob_call("/repo/src/a.py", content="print(2)\n")
    assert not result and "argument 'content' has sha256" in result.reason
    assert not _call(GLOB_STEP, args={"path": "/repo/src/a.py", "content": 1})
    assert not _call(GLOB_STEP, args={"path": ["/repo/src/a.py"], "content": "print(1)\n"})


def test_one_of_constraint():
    step = PlanStep(
        server="git",
        tool="push",
        definition_digest=DEF,
        args={"remote": "origin"},
        constraints=(OneOf(arg="branch", values=("main", "release")),),
    )
    assert _call(step, args={"remote": "origin", "branch": "main"})
    result = _call(step, args={"remote": "origin", "branch": "main-evil"})
    assert not result and "the plan allows one of ['main', 'release']" in result.reason
    assert not _call(step, args={"remote": "upstream", "branch": "main"})
    assert not _call(step, args={"remote": "origin"})


def test_every_constraint_on_an_argument_must_hold():
    step = PlanStep(
        server="fs",
        tool="write_file",
        definition_digest=DEF,
        constraints=(
            PathGlob(arg="path", root="/repo", glob="**"),
            OneOf(arg="path", values=("/repo/a.txt",)),
        ),
    )
    assert _call(step, args={"path": "/repo/a.txt"})
    assert not _call(step, args={"path": "/repo/b.txt"})


@pytest.mark.parametrize(
    ("glob", "path", "ok"),
    [
        ("*.py", "a.py", True),
        ("*.py", "x/a.py", False),
        ("**/*.py", "a.py", True),
        ("**/*.py", "x/y/a.py", True),
        ("src/**", "src", False),
        ("src/**", "src/a", True),
        ("src/**", "src/a/b", True),
        ("?.md", "a.md", True),
        ("?.md", "ab.md", False),
        (".github/*.yml", ".github/ci.yml", True),
        ("**", ".env", False),
        ("*", ".env", False),
        (".env", ".env", True),
        ("a+b(c).txt", "a+b(c).txt", True),
        ("a.txt", "aXtxt", False),
    ],
)
def test_glob_language(glob: str, path: str, ok: bool):
    assert glob_matches(glob, path) is ok


def test_under_root_is_lexical():
    assert under_root("/repo/a/b", "/repo") == "a/b"
    assert under_root("a/b/", "/repo") == "a/b"
    assert under_root("/etc/passwd", "/") == "etc/passwd"
    with pytest.raises(PathRefused):
        under_root("/repo/a", "relative")


def test_path_refused_is_a_typed_input_error():
    """A refused path reaches a user as ``error[path_refused]``, never as a bare ValueError."""
    with pytest.raises(PathRefused, match="is not under the root '/repo'") as e:
        under_root("/etc/passwd", "/repo")
    assert isinstance(e.value, InputError) and e.value.code == "path_refused"
