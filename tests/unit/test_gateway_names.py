"""Exposed names read one way only; every path an upstream is given is read as the upstream could read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types
import pytest

from writ.engine.gateway.config import GatewayConfig, UpstreamConfig
from writ.engine.gateway.exposure import Secret, approver_keys_dir, given_paths, secrets_exposed
from writ.engine.gateway.listing import exposable
from writ.engine.gateway.names import fold, server_name_problem, split_name, split_uri


def tool(name: str, **hints: Any) -> types.Tool:
    annotations = types.ToolAnnotations(**hints) if hints else None
    return types.Tool(name=name, input_schema={"type": "object"}, annotations=annotations)


def test_fold_is_nfkc_then_casefold() -> None:
    assert fold("\uff37RIT") == fold("writ") == "writ"
    assert fold("\ufb01le") == "file"


@pytest.mark.parametrize("name", ["git", "git-2", "a_b", "A1", "x" * 64])
def test_plain_server_names_pass(name: str) -> None:
    assert server_name_problem(name, ["fs", "other"]) is None


def test_splits_reject_a_newline_after_the_server() -> None:
    assert split_uri("writ://git\n/file:///a") is None
    assert split_name("git__git_status") == ("git", "git_status")


def test_a_refused_tool_is_audited_once_while_it_stays_refused() -> None:
    audited: list[tuple[str, dict[str, Any]]] = []
    tools = [tool("ok"), tool("dup"), tool("dup"), tool("_x")]
    first = exposable("s", tools, audit=lambda k, p: audited.append((k, p)))
    assert set(first) == {"ok"} and first.refused == {"dup", "_x"}
    assert sorted(p["tool"] for _, p in audited) == ["_x", "dup"]
    again = exposable("s", tools, audit=lambda k, p: audited.append((k, p)), previous=first)
    assert set(again) == {"ok"} and len(audited) == 2
    fixed = exposable("s", [tool("ok"), tool("dup")], audit=lambda k, p: audited.append((k, p)), previous=again)
    assert set(fixed) == {"ok", "dup"} and fixed.refused == frozenset()


def test_trust_in_annotations_comes_from_the_entry_only() -> None:
    listed = exposable("git", [tool("peek", read_only_hint=True)])
    assert listed["peek"].annotations_trusted is False
    assert exposable("git", [tool("peek")], trust_annotations=True)["peek"].annotations_trusted is True


def paths(up: dict[str, Any], environ: dict[str, str]) -> dict[str, set[Path]]:
    out: dict[str, set[Path]] = {}
    for written, path in given_paths(UpstreamConfig.model_validate(up), environ):
        out.setdefault(written, set()).add(path)
    return out


def test_every_reading_of_an_argument(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "h"), "PATH": "/usr/bin"}
    got = paths({"command": "x", "cwd": str(tmp_path), "env": {"ROOT": str(tmp_path / "r")},
                 "args": ["--repository=/srv/a", "-r/srv/b", "~", "$ROOT/x", "${ROOT}", "--dirs=/srv/c:/srv/d", "rel"]},
                env)
    assert Path("/srv/a") in got["--repository=/srv/a"]
    assert Path("/srv/b") in got["-r/srv/b"]
    assert tmp_path / "h" in got["~"] and tmp_path / "~" in got["~"]  # expanded, and as written (from the cwd)
    assert tmp_path / "r" / "x" in got["$ROOT/x"] and tmp_path / "r" in got["${ROOT}"]
    assert {Path("/srv/c"), Path("/srv/d")} <= got["--dirs=/srv/c:/srv/d"]
    assert got["rel"] == {tmp_path / "rel"}
    assert got[f"ROOT={tmp_path / 'r'}"] == {tmp_path / "r"}  # an env value is a path it is given


def test_home_path_and_tmp_in_env_are_not_roots(tmp_path: Path) -> None:
    got = paths({"command": "x", "env": {"HOME": "/", "TMPDIR": "/", "PYTHONPATH": "/", "PATH": "/"}}, {})
    assert got == {}


def test_a_url_upstream_is_not_checked(tmp_path: Path) -> None:
    cfg = GatewayConfig.model_validate({"upstreams": {"remote": {"url": "http://127.0.0.1:9/mcp"}}})
    assert secrets_exposed(cfg, [Secret(tmp_path, "x")]) == []


def test_approver_keys_dir_follows_xdg_then_home(tmp_path: Path) -> None:
    assert approver_keys_dir({"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/h"}) == tmp_path / "writ" / "keys"
    assert approver_keys_dir({"XDG_CONFIG_HOME": "relative", "HOME": "/h"}) == Path("/h/.config/writ/keys")
    assert approver_keys_dir({"HOME": "/h"}) == Path("/h/.config/writ/keys")
