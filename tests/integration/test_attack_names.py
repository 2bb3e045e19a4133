"""Issue 9, finding 6: names that route to the wrong place.

Exposed names are ``<server>__<tool>``, split at the first ``__``. Upstreams ``evil`` and
``evil_`` both expose ``evil___shadow`` (``evil`` + ``_shadow``, ``evil_`` + ``shadow``), and
the call went to the first. Every shape of name that makes the split ambiguous, or that an
agent or an approver could take for another, is refused when ``writ.toml`` loads
(``server_name_ambiguous``); an upstream's tools whose exposed names could be misread or
collide are not exposed, and that is audited (``tool_refused``, ``tool_name_ambiguous``).
Real parts: `writ mcp` subprocesses, the lying server of ``tests/support/lying_server.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError
from support.gateway import STANDARD_PRINCIPALS, audit_entries, gateway_client, register, toml_list, toml_str
from support.lying_server import lying_server

from writ.engine.gateway.config import GatewayConfigError, load_config

WRIT = Path(sys.executable).with_name("writ")


def upstreams(directory: Path, names: list[str]) -> Path:
    """``writ.toml`` with one lying server (tool ``shadow``) under each of ``names``."""
    sections = []
    for i, name in enumerate(names):
        command, _ = lying_server(directory, [{"name": "shadow"}, {"name": "_shadow"}], f"server{i}")
        sections.append(f"[upstreams.{json.dumps(name, ensure_ascii=False)}]\ncommand = {toml_str(command[0])}\n"
                        f"args = {toml_list(command[1:])}\n")
    config = directory / "writ.toml"
    config.write_text("\n".join(sections))
    return config


def writ_mcp(config: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(WRIT), "mcp", "--principal", "exec-bot", "--config", str(config),
                           "--data-dir", str(data_dir)], check=False, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_shadow_server_name_routes_to_first(tmp_path: Path) -> None:
    """``evil`` and ``evil_`` would both expose ``evil___shadow``: `writ mcp` does not start."""
    data_dir = tmp_path / "writ-home"
    register(data_dir, STANDARD_PRINCIPALS)
    config = upstreams(tmp_path, ["evil", "evil_"])
    r = writ_mcp(config, data_dir)
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert r.stderr == (f"error[server_name_ambiguous]: {config}: upstreams.evil_: upstream name 'evil_' starts or "
                        "ends with '_': beside the '__' of an exposed name it reads as part of another server or "
                        "tool name; rename it\n")


@pytest.mark.parametrize(("names", "refused", "code", "why"), [
    pytest.param(["evil", "evil_"], "evil_", "server_name_ambiguous", "ends with '_'", id="trailing_underscore"),
    pytest.param(["_evil"], "_evil", "server_name_ambiguous", "starts or ends with '_'", id="leading_underscore"),
    pytest.param(["a__b"], "a__b", "config_invalid", r"not '__'", id="separator_inside"),
    pytest.param(["git", "Git"], "Git", "server_name_ambiguous", "differ only in case", id="case_of_another"),
    pytest.param(["WRIT"], "WRIT", "server_name_ambiguous", "looks like 'writ'", id="case_of_writ"),
    pytest.param(["\uff57rit"], "\uff57rit", "server_name_ambiguous", "looks like 'writ'", id="fullwidth_writ"),
    pytest.param(["git", "\uff47it"], "\uff47it", "server_name_ambiguous", "look-alike", id="fullwidth_of_another"),
    pytest.param(["\u0261it"], "\u0261it", "config_invalid", "ASCII letters", id="latin_script_g_not_ascii"),
    pytest.param(["git\n"], "git\n", "config_invalid", "ASCII letters", id="trailing_newline"),
])
def test_ambiguous_server_name_refused_when_config_loads(tmp_path: Path, names: list[str], refused: str, code: str,
                                                         why: str) -> None:
    config = upstreams(tmp_path, names)
    with pytest.raises(GatewayConfigError, match=why) as err:
        load_config(config)
    assert err.value.code == code
    assert err.value.key == f"upstreams.{refused}"


def test_two_servers_apart_by_one_character_are_fine(tmp_path: Path) -> None:
    assert set(load_config(upstreams(tmp_path, ["git", "git-2", "git_b"])).upstreams) == {"git", "git-2", "git_b"}


COLLIDING = [
    {"name": "read_notes", "readOnlyHint": True},
    {"name": "shadow"}, {"name": "Shadow"},              # the same name but for case
    {"name": "twice"}, {"name": "twice"},                # one name listed twice
    {"name": "\ufb01le"}, {"name": "file"},              # the 'fi' ligature folds to 'fi'
    {"name": "\uff53ync"}, {"name": "sync"},             # fullwidth 's' is 's' only after NFKC (casefold keeps it)
    {"name": "_hidden"},                                 # evil___hidden reads as server 'evil_'
    {"name": ""},                                        # evil__ has no tool part
]


def test_colliding_tool_names_are_not_exposed(tmp_path: Path) -> None:
    data_dir = tmp_path / "writ-home"
    register(data_dir, STANDARD_PRINCIPALS)
    command, calls = lying_server(tmp_path, COLLIDING, "evil")
    config = tmp_path / "writ.toml"
    config.write_text(f"[upstreams.evil]\ncommand = {toml_str(command[0])}\nargs = {toml_list(command[1:])}\n")
    with gateway_client(config, "exec-bot", data_dir, tmp_path / "gateway.stderr") as client:
        exposed = {t.name for t in client.list_tools() if t.name.startswith("evil")}
        assert exposed == {"evil__read_notes"}
        for name in ("evil__shadow", "evil__Shadow", "evil__twice", "evil__file", "evil__sync", "evil___hidden"):
            with pytest.raises(MCPError) as err:
                client.call(name, {})
            assert err.value.code == -32602, name  # unknown tool: it reached nothing
    assert not calls.exists()
    refused = [e.payload for e in audit_entries(data_dir) if e.kind == "tool_refused"]
    assert sorted(p["tool"] for p in refused) == sorted(["", "Shadow", "_hidden", "file", "shadow", "twice",
                                                         "\ufb01le", "sync", "\uff53ync"])
    assert {p["code"] for p in refused} == {"tool_name_ambiguous"} and {p["server"] for p in refused} == {"evil"}
