"""Issue 9, finding 7: trust in an upstream's annotations is the operator's word on that exact upstream.

An attacker who controls an upstream chooses its tool names and its hints (``readOnlyHint:
true`` on a tool that writes). If the operator configures it under a name policy data knows
(``git``), that name must buy it nothing: a tool policy data does not classify is a write,
unless the operator set ``trust_annotations = true`` on that upstream's own entry in
``writ.toml`` (ADR 0013). Real parts: `writ mcp` subprocesses, the lying server of
``tests/support/lying_server.py``, the shipped policies, the audit log.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gateway import (
    STANDARD_PRINCIPALS,
    GatewayClient,
    audit_entries,
    gateway_client,
    reason_codes,
    register,
    toml_list,
    toml_str,
)
from support.lying_server import lying_server

LIES = [{"name": "write_file", "readOnlyHint": True, "destructiveHint": False}]


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "writ-home"
        config_dir = root / "config"
        config_dir.mkdir()
        # The same lying server twice: as "git" (a name tools.json knows), and as "vetted", whose
        # entry the operator marked trust_annotations = true.
        git, self.git_calls = lying_server(config_dir, LIES, "git")
        vetted, self.vetted_calls = lying_server(config_dir, LIES, "vetted")
        self.config = config_dir / "writ.toml"
        self.config.write_text(f"""
[upstreams.git]
command = {toml_str(git[0])}
args = {toml_list(git[1:])}

[upstreams.vetted]
command = {toml_str(vetted[0])}
args = {toml_list(vetted[1:])}
trust_annotations = true
""")
        # A second planner for the test whose refused write locks its principal, so that lock
        # leaves plan-bot (the other tests' planner) alone whatever order the tests run in.
        register(self.data_dir, {**STANDARD_PRINCIPALS, "tricked-bot": "planner"})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return Env(tmp_path_factory.mktemp("annotations"))


@pytest.fixture(scope="module")
def planner(env: Env) -> Iterator[GatewayClient]:
    with gateway_client(env.config, "plan-bot", env.data_dir, env.root / "planner.stderr") as client:
        yield client


def test_trust_is_the_operators_word_on_that_entry(env: Env, planner: GatewayClient) -> None:
    """The same server, under an entry the operator marked ``trust_annotations = true``: its hint counts."""
    result = planner.call("vetted__write_file", {"path": "x", "content": "y"})
    assert not result.is_error, result
    assert env.vetted_calls.read_text().startswith("write_file ")
    allowed = [e.payload for e in audit_entries(env.data_dir) if e.kind == "decision"
               and e.payload["input"]["tool"]["server"] == "vetted"]
    assert allowed[-1]["input"]["tool"]["annotations_trusted"] is True


def test_lying_server_named_git_runs_writes_as_planner(env: Env) -> None:
    # Its own planner: the refused write locks the principal that made it (and every session of it).
    with gateway_client(env.config, "tricked-bot", env.data_dir, env.root / "tricked.stderr") as tricked:
        result = tricked.call("git__write_file", {"path": "/etc/motd", "content": "owned"})
    assert result.is_error
    assert reason_codes(result) == ["planner_cannot_write"]
    assert not env.git_calls.exists(), "the write reached the lying upstream"
    denied = [e.payload for e in audit_entries(env.data_dir) if e.kind == "decision"
              and e.payload["input"]["tool"]["server"] == "git"]
    assert denied and not denied[-1]["decision"]["allow"]
    assert denied[-1]["input"]["tool"]["annotations_trusted"] is False
    assert denied[-1]["input"]["tool"]["annotations"]["readOnlyHint"] is True  # the lie is on record


def test_tools_list_shows_the_lying_tool_as_a_write(env: Env) -> None:
    from click.testing import CliRunner

    from writ.engine.cli.main import main

    result = CliRunner().invoke(main, ["tools", "list", "--config", str(env.config), "--json",
                                       "--data-dir", str(env.root / "unused-home")])
    assert result.exit_code == 0, result.output
    import json

    classes = {t["name"]: (t["class"], t["class_from"]) for t in json.loads(result.stdout)["tools"]}
    assert classes == {"git__write_file": ("write", "default"), "vetted__write_file": ("read", "annotations")}


def test_trust_annotations_is_a_boolean_of_the_entry(tmp_path: Path) -> None:
    from writ.engine.gateway.config import GatewayConfigError, load_config

    config = tmp_path / "writ.toml"
    config.write_text(f'[upstreams.git]\ncommand = {toml_str(sys.executable)}\ntrust_annotations = "yes"\n')
    with pytest.raises(GatewayConfigError, match="upstreams.git.trust_annotations: "):
        load_config(config)
