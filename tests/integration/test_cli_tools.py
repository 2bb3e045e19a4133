"""``writ tools list`` and ``writ plan sign --config`` against the real upstream servers (mcp-server-git,
the npm filesystem server), started from a writ.toml as the gateway starts them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support.gateway import require_upstreams, toml_str, write_two_upstream_config

from writ.engine.cli.main import main
from writ.engine.cli.plan_file import check_steps_upstream, plan_from_file
from writ.engine.cli.tools import FROM_ANNOTATIONS, FROM_DATA, FROM_DEFAULT, ClassifiedTool, Listing
from writ.engine.core.errors import WritError
from writ.engine.core.settings import Settings, shipped_policy_dir
from writ.engine.core.timeutil import utc_now

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def writ(home: Path, *args: str | Path, code: int = 0) -> Result:
    result = CliRunner().invoke(main, [*map(str, args), "--data-dir", str(home)])
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """git and fs upstreams, in a directory apart from the data directory."""
    return write_two_upstream_config(tmp_path / "upstreams", require_upstreams())[2]


def test_tools_list_shows_each_tool_as_exposed_with_class_source_and_digest(config: Path, settings: Settings) -> None:
    # No data directory: the listing needs none (the policy set is the shipped one).
    text = writ(settings.home, "tools", "list", "--config", config).stdout
    assert text.splitlines()[0].split() == ["TOOL", "CLASS", "FROM", "DEFINITION", "DIGEST"]
    assert re.search(r"^fs__write_file\s+write\s+policy data\s+sha256:[0-9a-f]{64}$", text, re.MULTILINE)
    assert re.search(r"^git__git_status\s+read\s+policy data\s+sha256:[0-9a-f]{64}$", text, re.MULTILINE)
    assert re.search(r"^git__git_commit\s+write\s+policy data\s+", text, re.MULTILINE)
    assert "writ__" not in text  # Writ's own tools are not upstream tools

    doc = json.loads(writ(settings.home, "tools", "list", "--config", config, "--json").stdout)
    assert doc["problems"] == {}
    by_name = {t["name"]: t for t in doc["tools"]}
    assert {"fs__write_file", "fs__read_text_file", "git__git_status", "git__git_commit"} <= set(by_name)
    assert by_name["git__git_commit"] == {**by_name["git__git_commit"], "server": "git", "tool": "git_commit",
                                          "class": "write", "class_from": FROM_DATA}
    assert all(DIGEST.fullmatch(t["definition_digest"]) for t in doc["tools"])
    assert f"{by_name['fs__write_file']['definition_digest']}" in text  # the same digest both ways
    assert not settings.home.exists()


def test_tools_list_says_where_each_class_came_from(config: Path, settings: Settings, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of the policy data, git_status is read by its annotation (git's writ.toml entry trusts them); fs's are not."""
    policies = tmp_path / "policies"
    shutil.copytree(shipped_policy_dir(), policies)
    data = json.loads((policies / "writ" / "tools.json").read_text())
    del data["servers"]["git"]["tools"]["git_status"]
    del data["servers"]["fs"]["tools"]["read_text_file"]
    (policies / "writ" / "tools.json").write_text(json.dumps(data))
    monkeypatch.setenv("WRIT_POLICY_DIR", str(policies))
    config.write_text(config.read_text().replace("[upstreams.fs]", "trust_annotations = true\n[upstreams.fs]"))  # git's
    doc = json.loads(writ(settings.home, "tools", "list", "--config", config, "--json").stdout)
    classes = {t["name"]: (t["class"], t["class_from"]) for t in doc["tools"]}
    assert classes["git__git_status"] == ("read", FROM_ANNOTATIONS)
    assert classes["fs__read_text_file"] == ("write", FROM_DEFAULT)  # read-only by its hint, but fs is not trusted
    assert classes["fs__read_file"] == ("read", FROM_DATA)


def test_tools_list_names_an_upstream_that_did_not_start(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "writ.toml"
    config.write_text(f"[upstreams.ghost]\ncommand = {toml_str(tmp_path / 'no-such-server')}\n")
    result = writ(settings.home, "tools", "list", "--config", config, code=1)
    assert result.stdout == "no tools (no upstream started)\n"
    assert result.stderr == (f"error[upstream_unavailable]: upstream 'ghost' did not start: command not found: "
                             f"{tmp_path / 'no-such-server'}\n")


def test_tools_list_with_a_missing_config_is_one_line(settings: Settings, tmp_path: Path) -> None:
    result = writ(settings.home, "tools", "list", "--config", tmp_path / "nowhere.toml", code=1)
    assert result.stderr.startswith("error[config_invalid]: ") and len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


# -- writ plan sign --config: each step against the upstreams' tools ------------------------------------


def test_plan_sign_with_config_takes_the_digest_the_upstream_has_now(config: Path, settings: Settings,
                                                                    tmp_path: Path) -> None:
    from writ.engine.wiring.datadir import init_data_dir

    init_data_dir(settings)
    home = settings.home
    writ(home, "principals", "add", "plan-bot", "--role", "planner")
    writ(home, "keys", "new", "--principal", "plan-bot", "--out", tmp_path / "plan-bot.pem")
    listed = json.loads(writ(home, "tools", "list", "--config", config, "--json").stdout)
    digest = {t["name"]: t["definition_digest"] for t in listed["tools"]}["fs__write_file"]
    step = {"server": "fs", "tool": "write_file", "definition_digest": digest,
            "args": {"path": str(config.parent.parent / "files" / "notes.txt"), "content": "planned\n"}}
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"title": "Update the notes", "rationale": "", "planner": "plan-bot",
                                     "steps": [step]}))
    signed = writ(home, "plan", "sign", plan_file, "--key", tmp_path / "plan-bot.pem", "--config", config)
    assert DIGEST.fullmatch(signed.stdout.strip())

    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({**json.loads(plan_file.read_text()),
                                 "steps": [{**step, "definition_digest": "sha256:" + "0" * 64}]}))
    refused = writ(home, "plan", "sign", stale, "--key", tmp_path / "plan-bot.pem", "--config", config, code=1)
    assert refused.stderr == (f"error[step_mismatch]: step 0: definition_digest sha256:{'0' * 64} is not the digest "
                              f"of fs__write_file now, {digest} (see `writ tools list --config {config}`)\n")
    assert not (tmp_path / "stale.signed.json").exists()


LISTING = Listing(
    [ClassifiedTool("fs", "write_file", "write", FROM_DATA, "sha256:" + "a" * 64),
     ClassifiedTool("git", "git_status", "read", FROM_ANNOTATIONS, "sha256:" + "b" * 64)],
    {"remote": "upstream 'remote' did not start: no answer within 20 s"},
)


@pytest.mark.parametrize(
    ("server", "tool", "digest", "expected"),
    [
        pytest.param("fs", "write_file", "a", None, id="known_write_with_its_digest"),
        pytest.param("fs", "delete_everything", "a",
                     "tool_unknown: step 0: no upstream of writ.toml offers fs__delete_everything", id="unknown_tool"),
        pytest.param("git", "git_status", "b",
                     "step_not_a_write: step 0: git__git_status is a read (from annotations)", id="read_step"),
        pytest.param("writ", "writ_plan_begin", "a", "plan_invalid: step 0: writ__writ_plan_begin is one of Writ's",
                     id="governance_tool_step"),
        pytest.param("remote", "deploy", "a", "upstream_unavailable: step 0: cannot check remote__deploy: upstream "
                     "'remote' did not start", id="upstream_down"),
    ],
)
def test_plan_sign_with_config_refuses_what_the_gateway_refuses(server: str, tool: str, digest: str,
                                                               expected: str | None) -> None:
    plan = plan_from_file({"title": "t", "planner": "plan-bot", "steps": [
        {"server": server, "tool": tool, "definition_digest": "sha256:" + digest * 64, "args": {}}]}, now=utc_now())
    if expected is None:
        check_steps_upstream(plan, LISTING, Path("writ.toml"))
        return
    with pytest.raises(WritError) as caught:
        check_steps_upstream(plan, LISTING, Path("writ.toml"))
    assert f"{caught.value.code}: {caught.value.message}".startswith(expected)

