"""``writ principals|keys|trust|plan|approve|reject`` end to end through click's CliRunner, on a real data directory."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from support.approvals import BackgroundWorker

from writ.engine.cli.keys import keys, trust
from writ.engine.cli.main import main
from writ.engine.cli.plan import approve, plan, reject
from writ.engine.cli.principals import principals
from writ.engine.cli.support import safe
from writ.engine.cli.tools import tools
from writ.engine.core.settings import Settings

DEF = "sha256:" + "ab" * 32
PLAN_FILE = {
    "title": "Fix the README typo",
    "rationale": "Reported in #12.\nOne line.",
    "planner": "plan-bot",
    "expires_in": "2h",
    "steps": [
        {"server": "fs", "tool": "write_file", "definition_digest": DEF,
         "args": {"path": "/repo/README.md", "content": "# Writ\nPolicy-as-code.\n"}},
        {"server": "git", "tool": "git_commit", "definition_digest": DEF, "args": {"message": "Fix README typo"}},
    ],
}


class Writ:
    """Runs `writ ...` against one data directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()

    def __call__(self, *args: str | Path, code: int = 0) -> Result:
        result = self.runner.invoke(main, [*map(str, args), "--data-dir", str(self.home)])
        assert result.exit_code == code, (args, result.output, result.exception)
        return result


@pytest.fixture
def writ(settings: Settings, temporal_env: str) -> Iterator[Writ]:
    """`writ` on a fresh data directory, with an approval worker for it on the test's task queue."""
    from writ.engine.wiring.datadir import init_data_dir

    init_data_dir(settings)
    with BackgroundWorker(Settings(home=settings.home)):
        yield Writ(settings.home)


@pytest.fixture
def people(writ: Writ, tmp_path: Path) -> dict[str, Path]:
    """plan-bot (planner), alice and bob (code owners), carol (security), exec-bot; a key file each."""
    paths = {}
    for name, role in [("plan-bot", "planner"), ("alice", "approver"), ("bob", "approver"), ("carol", "approver"),
                       ("exec-bot", "executor")]:
        writ("principals", "add", name, "--role", role)
        out = writ("keys", "new", "--principal", name).stdout
        paths[name] = Path(re.search(r"private key written to (\S+) \(mode 0600\)", out).group(1))  # type: ignore[union-attr]
    return paths


def signed_plan(
    writ: Writ, people: dict[str, Path], directory: Path, doc: dict[str, object] = PLAN_FILE, name: str = "plan"
) -> tuple[str, Path]:
    source = directory / f"{name}.json"
    source.write_text(json.dumps(doc))
    result = writ("plan", "sign", source, "--key", people["plan-bot"])
    return result.stdout.strip(), directory / f"{name}.signed.json"


def submitted(writ: Writ, people: dict[str, Path], tmp_path: Path) -> tuple[str, Path]:
    plan_id, envelope = signed_plan(writ, people, tmp_path)
    writ("plan", "submit", envelope)
    return plan_id, envelope


# -- the whole story ------------------------------------------------------------------------------


def test_principals_keys_sign_submit_approve_show_verify(writ: Writ, tmp_path: Path) -> None:
    assert writ("principals", "add", "plan-bot", "--role", "planner").stdout == (
        "added principal plan-bot (planner); groups: none (add one with `writ groups add GROUP plan-bot`)\n"
    )
    assert "groups: code-owners" in writ("principals", "add", "alice", "--role", "approver").stdout
    writ("principals", "add", "bob", "--role", "approver")
    writ("principals", "add", "exec-bot", "--role", "executor")

    made = writ("keys", "new", "--principal", "plan-bot")
    planner_key = Path(re.search(r"private key written to (\S+) ", made.stdout).group(1))  # type: ignore[union-attr]
    assert planner_key.parent == writ.home / "keys"
    assert re.fullmatch(r"plan-bot-[0-9a-f]{12}\.pem", planner_key.name)
    assert stat.S_IMODE(planner_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(planner_key.parent.stat().st_mode) == 0o700
    pem = planner_key.read_text()
    assert "PRIVATE KEY" in pem and pem not in made.output and "PRIVATE KEY" not in made.output
    assert re.match(r"key sha256:[0-9a-f]{64} for plan-bot \(planner\)\n", made.stdout)
    alice_key, bob_key = tmp_path / "alice.pem", tmp_path / "bob.pem"
    writ("keys", "new", "--principal", "alice", "--out", alice_key)
    writ("keys", "new", "--principal", "bob", "--out", bob_key)
    assert stat.S_IMODE(alice_key.stat().st_mode) == 0o600

    listing = writ("principals", "list").stdout
    assert re.search(r"alice\s+approver\s+code-owners\s+1 valid / 1", listing)
    assert re.search(r"exec-bot\s+executor\s+-\s+0 valid / 0", listing)
    assert len(re.findall(r"\bvalid\b", writ("keys", "list").stdout)) == 3

    source = tmp_path / "plan.json"
    source.write_text(json.dumps(PLAN_FILE))
    signed = writ("plan", "sign", source, "--key", planner_key)
    plan_id = signed.stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", plan_id)
    envelope = tmp_path / "plan.signed.json"
    assert json.loads(envelope.read_bytes())["payloadType"] == "application/vnd.writ.plan+json"

    submit = writ("plan", "submit", envelope).stdout
    assert submit.splitlines()[:2] == [f"plan {plan_id} pending: Fix the README typo",
                                       "0/2 approvals; missing: code-owners, 1 more approval"]
    assert "approval workflow runs on Temporal" in submit
    short = plan_id[7:13]
    first = writ("approve", short, "--key", alice_key, "--comment", "diff reviewed").stdout
    assert first.splitlines() == [f"alice approved plan {plan_id[:19]}.. (now pending)",
                                  "1/2 approvals (alice); missing: 1 more approval"]
    second = writ("approve", plan_id, "--key", bob_key).stdout
    assert second.splitlines()[-1] == "2/2 approvals (alice, bob); approved"
    assert "(now approved)" in second

    show = writ("plan", "show", short).stdout
    assert f"plan      {plan_id}" in show and "state     approved" in show
    assert "planner   plan-bot (signature OK)" in show
    assert '"content": "# Writ\\nPolicy-as-code.\\n"' in show and '"message": "Fix README typo"' in show
    assert "[0] fs / write_file" in show and "[1] git / git_commit" in show and show.count(DEF) == 2
    assert re.search(r"#0 approve by alice \(key [0-9a-f]{12}\), received \S+: counted\n\s+\"diff reviewed\"", show)
    assert writ("plan", "show", short, "--envelope").stdout_bytes.rstrip(b"\n") == envelope.read_bytes().rstrip(b"\n")

    verified = writ("plan", "verify", short).stdout
    assert verified.startswith(f"plan {plan_id}: signature OK (planner plan-bot, key ")
    assert verified.rstrip().endswith("VERIFIED")
    assert writ("plan", "verify", envelope).stdout.rstrip().endswith("VERIFIED")
    assert short in writ("plan", "list", "--state", "approved").stdout
    assert writ("plan", "list", "--state", "pending").stdout == "no plans in state pending\n"

    root = tmp_path / "trust-root.json"
    exported = writ("trust", "export", "-o", root).stdout
    assert re.fullmatch(r"wrote \S+: 3 keys, 2 groups, digest sha256:[0-9a-f]{64}\n", exported)
    assert writ("plan", "verify", envelope, "--trust", root).stdout.rstrip().endswith("VERIFIED")


# -- verify says exactly what failed ----------------------------------------------------------------


def test_verify_a_tampered_envelope_file(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    _, envelope = submitted(writ, people, tmp_path)
    env = json.loads(envelope.read_bytes())
    payload = base64.b64decode(env["payload"]).replace(b"/repo/README.md", b"/repo/Makefile")
    env["payload"] = base64.b64encode(payload).decode()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(env))
    result = writ("plan", "verify", tampered, code=1)
    key_hint = env["signatures"][0]["keyid"][7:19]
    assert result.stdout == (
        f"FAILED plan signature of {tampered}: plan signature does not verify under any trusted planner key "
        f"(signature key ids: {key_hint})\n"
    )


def test_verify_names_the_approval_whose_key_was_revoked(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    plan_id, _ = submitted(writ, people, tmp_path)
    writ("approve", plan_id, "--key", people["alice"])
    writ("approve", plan_id, "--key", people["bob"])
    alice_key = re.search(r"^([0-9a-f]{12})\s+alice", writ("keys", "list").stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert "revoked key" in writ("keys", "revoke", alice_key).stdout
    result = writ("plan", "verify", plan_id[7:15], code=1)
    assert f"approval #0: key_invalid: key {alice_key} of 'alice' was revoked at" in result.stdout
    assert "state approved is not backed by the approvals" in result.stdout
    assert "FAILED: 2 problems" in result.stdout


def test_verify_a_stored_plan_whose_row_was_edited(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    from sqlalchemy import text

    from writ.engine.core.db import open_database

    plan_id, _ = submitted(writ, people, tmp_path)
    other_id, other = signed_plan(writ, people, tmp_path, {**PLAN_FILE, "title": "Something else"}, name="other")
    with open_database(Settings(home=writ.home)) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE plans SET envelope = :e WHERE id = :id"), {"e": other.read_bytes(), "id": plan_id})
    result = writ("plan", "verify", plan_id, code=1)
    assert result.stdout == (
        f"FAILED stored plan {plan_id[:19]}..: its envelope holds plan {other_id[:19]}.. (row changed outside Writ)\n"
    )


def test_auditor_verifies_offline_with_only_the_trust_root(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    _, envelope = submitted(writ, people, tmp_path)
    root = tmp_path / "root.json"
    writ("trust", "export", "-o", root)
    elsewhere = Writ(tmp_path / "auditor-laptop")  # no database there, and none is created
    out = elsewhere("plan", "verify", envelope, "--trust", root).stdout
    # the signature verifies, but nothing here says the plan was approved: never a bare VERIFIED
    assert out.endswith("its approvals were not checked (`writ attest verify` checks an exported plan's approvals "
                        "offline)\nSIGNATURE VERIFIED (approvals unknown)\n")
    doc = json.loads(elsewhere("plan", "verify", envelope, "--trust", root, "--json").stdout)
    assert (doc["verdict"], doc["in_store"], doc["approvals"]) == ("signature_verified", False, None)
    assert not (tmp_path / "auditor-laptop").exists()


def test_verify_a_missing_file(writ: Writ) -> None:
    assert writ("plan", "verify", "nowhere/plan.signed.json", code=1).stderr == (
        "error[input_invalid]: no envelope file nowhere/plan.signed.json (and it is not a plan id)\n"
    )


def test_verify_against_a_doctored_trust_root(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    _, envelope = submitted(writ, people, tmp_path)
    root = tmp_path / "root.json"
    writ("trust", "export", "-o", root)
    doc = json.loads(root.read_text())
    doc["trust"]["groups"]["code-owners"].append("mallory")
    root.write_text(json.dumps(doc))
    assert "error[verification_failed]: trust root digest is" in writ("plan", "verify", envelope, "--trust", root,
                                                                       code=1).stderr


def test_verify_a_pending_plan_says_state_and_count_and_is_not_verified(writ: Writ, people: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    plan_id, envelope = submitted(writ, people, tmp_path)
    pending = writ("plan", "verify", plan_id, code=3).stdout
    assert "VERIFIED" not in pending
    assert pending.splitlines()[-1] == ("signature OK; state pending; approvals 0/2 "
                                        "(missing: code-owners, 1 more approval): NOT APPROVED")
    writ("approve", plan_id, "--key", people["alice"])
    assert writ("plan", "verify", envelope, code=3).stdout.splitlines()[-1] == (
        "signature OK; state pending; approvals 1/2 (alice; missing: 1 more approval): NOT APPROVED")
    writ("approve", plan_id, "--key", people["bob"])
    assert writ("plan", "verify", plan_id).stdout.splitlines()[-1] == (
        "signature OK; state approved; approvals 2/2 (alice, bob): VERIFIED")


def test_verify_a_rejected_plan_is_not_approved(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    plan_id, _ = submitted(writ, people, tmp_path)
    writ("reject", plan_id, "--key", people["bob"])
    assert writ("plan", "verify", plan_id, code=3).stdout.splitlines()[-1] == (
        "signature OK; state rejected; approvals 0/2 (missing: code-owners, 1 more approval); "
        "rejected by bob: NOT APPROVED")


def test_verify_help_documents_the_exit_status() -> None:
    text = CliRunner().invoke(main, ["plan", "verify", "--help"]).output
    assert "Exit status:" in text and "0  VERIFIED" in text and "1  FAILED" in text and "3  NOT APPROVED" in text


# -- approvals and rejections ------------------------------------------------------------------------


def test_reject_stops_the_plan(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    plan_id, _ = submitted(writ, people, tmp_path)
    out = writ("reject", plan_id, "--key", people["bob"], "--comment", "touches prod").stdout
    assert out.splitlines() == [f"bob rejected plan {plan_id[:19]}.. (now rejected)", "rejected by bob"]
    assert "#0 reject by bob" in writ("plan", "show", plan_id).stdout


def test_approval_by_someone_outside_the_required_group(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    plan_id, _ = submitted(writ, people, tmp_path)
    result = writ("approve", plan_id, "--key", people["carol"], code=1)
    assert result.stderr == (
        f"error[approval_not_in_required_group]: approval of plan {plan_id[:19]}.. refused "
        "(not_in_required_group): 'carol' is in none of the required groups ['code-owners']\n"
    )


def test_approval_by_the_plan_author(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    plan_id, _ = submitted(writ, people, tmp_path)
    result = writ("approve", plan_id, "--key", people["plan-bot"], code=1)
    assert "error[approval_self_approval]:" in result.stderr and "'plan-bot' wrote the plan" in result.stderr


def test_approval_with_a_key_the_trust_store_does_not_know(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    from writ.plans.keys import PrivateKey

    plan_id, _ = submitted(writ, people, tmp_path)
    stranger = tmp_path / "stranger.pem"
    PrivateKey.generate().save(stranger)
    result = writ("approve", plan_id, "--key", stranger, code=1)
    assert re.fullmatch(r"error\[key_not_found\]: key [0-9a-f]{12} in \S+stranger.pem is not in the trust store; "
                        r"register it with `writ keys new` \(see `writ keys list`\)\n", result.stderr)


def test_approval_key_file_readable_by_others_is_refused(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    plan_id, _ = submitted(writ, people, tmp_path)
    os.chmod(people["alice"], 0o644)
    assert "error[key_file_insecure]" in writ("approve", plan_id, "--key", people["alice"], code=1).stderr


def test_unknown_and_invalid_plan_references(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    plan_id, _ = submitted(writ, people, tmp_path)
    absent = ("0" if plan_id[7] != "0" else "1") * 8
    assert writ("plan", "show", absent, code=1).stderr == (
        f"error[plan_not_found]: no plan '{absent}' (see `writ plan list`)\n"
    )
    assert writ("plan", "show", "zz", code=1).stderr.startswith("error[plan_id_invalid]: plan 'zz' is neither")
    assert writ("plan", "verify", "%%%%", code=1).stderr.startswith("error[plan_id_invalid]")


# -- keys -----------------------------------------------------------------------------------------


def test_keys_new_never_overwrites_and_registers_nothing_then(writ: Writ, tmp_path: Path) -> None:
    writ("principals", "add", "alice", "--role", "approver")
    existing = tmp_path / "alice.pem"
    existing.write_text("precious")
    result = writ("keys", "new", "--principal", "alice", "--out", existing, code=1)
    assert result.stderr == f"error[key_file_exists]: refusing to overwrite existing key file {existing}\n"
    assert existing.read_text() == "precious"
    assert writ("keys", "list").stdout.startswith("no keys")


def test_keys_new_for_an_unknown_principal_writes_no_file(writ: Writ) -> None:
    result = writ("keys", "new", "--principal", "ghost", code=1)
    assert result.stderr.startswith("error[principal_not_found]: no principal 'ghost'")
    assert not (writ.home / "keys").exists() or not any((writ.home / "keys").iterdir())


def test_keys_dir_open_to_others_is_refused(writ: Writ) -> None:
    writ("principals", "add", "plan-bot", "--role", "planner")  # an approver's key goes to its own directory
    (writ.home / "keys").mkdir(mode=0o755)
    os.chmod(writ.home / "keys", 0o755)
    assert "error[key_dir_insecure]: keys directory" in writ("keys", "new", "--principal", "plan-bot", code=1).stderr


def test_revoke_at_a_time(writ: Writ, people: dict[str, Path]) -> None:
    kid = re.search(r"^([0-9a-f]{12})\s+bob", writ("keys", "list").stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
    out = writ("keys", "revoke", kid, "--at", "2026-01-01T00:00:00Z").stdout
    assert out == f"revoked key {kid} of bob (approver) from 2026-01-01T00:00:00Z\n"
    assert re.search(rf"{kid}\s+bob\s+approver\s+\S+\s+revoked at 2026-01-01T00:00:00Z", writ("keys", "list").stdout)
    assert "has no timezone" in writ("keys", "revoke", kid, "--at", "2025-01-01T00:00:00", code=1).stderr


def test_principal_with_a_second_role_is_refused(writ: Writ) -> None:
    writ("principals", "add", "alice", "--role", "approver")
    result = writ("principals", "add", "alice", "--role", "auditor", code=1)
    assert result.stderr == "error[principal_exists]: principal 'alice' already exists with role approver\n"


# -- plan files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"created_at": "2026-01-01T00:00:00Z"}, "created_at are filled in by `writ plan sign`",
                     id="created_at_given"),
        pytest.param({"approved": True}, "unknown plan file fields: approved", id="unknown_field"),
        pytest.param({"expires_in": "4x"}, "expires_in '4x' is not a duration", id="bad_duration"),
        pytest.param({"steps": []}, "not a valid plan: steps: ", id="no_steps"),
        pytest.param({"planner": "plan bot"}, "not a valid plan: planner: ", id="bad_planner_name"),
        pytest.param({"expires_at": "2026-01-01T00:00:00Z", "expires_in": "1h"}, "not both", id="two_expiries"),
    ],
)
def test_plan_sign_refuses_bad_plan_files(writ: Writ, people: dict[str, Path], tmp_path: Path,
                                          change: dict[str, object], message: str) -> None:
    source = tmp_path / "plan.json"
    source.write_text(json.dumps({**PLAN_FILE, **change}))
    result = writ("plan", "sign", source, "--key", people["plan-bot"], code=1)
    assert result.stderr.startswith("error[plan_invalid]: ") and message in result.stderr
    assert not (tmp_path / "plan.signed.json").exists()


def test_plan_sign_refuses_duplicate_keys_in_the_file(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "plan.json"
    source.write_text('{"title": "a", "title": "b"}')
    assert "error[json_duplicate_key]" in writ("plan", "sign", source, "--key", people["plan-bot"], code=1).stderr


def test_plan_sign_never_overwrites_an_envelope(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    signed_plan(writ, people, tmp_path)
    source = tmp_path / "plan.json"
    assert "error[file_exists]: refusing to overwrite" in writ("plan", "sign", source, "--key", people["plan-bot"],
                                                               code=1).stderr


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("key_of_another_principal", r"key [0-9a-f]{12} in \S+ is a key of 'exec-bot' \(executor\), but "
                     r"the plan's planner is 'plan-bot'; sign with a key of 'plan-bot' \(see `writ keys list "
                     r"--principal plan-bot`\)", id="key_of_another_principal"),
        pytest.param("key_not_trusted", r"key [0-9a-f]{12} in \S+stranger.pem is not in the trust store; sign with a "
                     r"key of 'plan-bot' .*", id="key_not_trusted"),
        pytest.param("planner_not_a_planner", r"'exec-bot' is an executor, not a planner: only a planner's key "
                     r"signs plans", id="planner_not_a_planner"),
        pytest.param("revoked_planner_key", r"key [0-9a-f]{12} of 'plan-bot' is revoked at \S+; sign with .*",
                     id="revoked_planner_key"),
    ],
)
def test_plan_sign_refuses_a_key_that_is_not_a_valid_key_of_the_planner(
        writ: Writ, people: dict[str, Path], tmp_path: Path, case: str, message: str) -> None:
    from writ.plans.keys import PrivateKey

    doc, key = PLAN_FILE, people["exec-bot"]
    if case == "key_not_trusted":
        key = tmp_path / "stranger.pem"
        PrivateKey.generate().save(key)
    elif case == "planner_not_a_planner":
        doc = {**PLAN_FILE, "planner": "exec-bot"}
    elif case == "revoked_planner_key":
        key = people["plan-bot"]
        writ("keys", "revoke", key.name.removesuffix(".pem").rpartition("-")[2])
    source = tmp_path / "plan.json"
    source.write_text(json.dumps(doc))
    result = writ("plan", "sign", source, "--key", key, code=1)
    assert re.fullmatch(rf"error\[signing_key_untrusted\]: {message}\n", result.stderr), result.stderr
    assert not (tmp_path / "plan.signed.json").exists()


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        pytest.param({"server": "fs", "tool": "delete_everything"},
                     "error[tool_unknown]: step 0: fs__delete_everything is not in the policy data (data.writ.tools); "
                     "give --config writ.toml", id="tool_not_in_policy_data"),
        pytest.param({"server": "git", "tool": "git_status"},
                     "error[step_not_a_write]: step 0: git__git_status is a read (policy data), and only writes need a "
                     "plan", id="read_step"),
        pytest.param({"server": "writ", "tool": "writ_plan_begin"},
                     "error[plan_invalid]: step 0: writ__writ_plan_begin is one of Writ's own tools", id="writ_tool_step"),
    ],
)
def test_plan_sign_without_config_refuses_a_step_the_policy_data_has_no_write_for(
        writ: Writ, people: dict[str, Path], tmp_path: Path, step: dict[str, str], expected: str) -> None:
    doc = {**PLAN_FILE, "steps": [{**PLAN_FILE["steps"][1], **step}]}  # type: ignore[index]
    source = tmp_path / "plan.json"
    source.write_text(json.dumps(doc))
    assert writ("plan", "sign", source, "--key", people["plan-bot"], code=1).stderr.startswith(expected)
    assert not (tmp_path / "plan.signed.json").exists()


def test_submit_with_the_wrong_key_says_whose_key_signed(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    # `writ plan sign` refuses this key (see below); an envelope signed elsewhere meets the store's check.
    from writ.engine.cli.plan_file import plan_from_file
    from writ.engine.core.timeutil import utc_now
    from writ.plans.keys import PrivateKey
    from writ.plans.statements import sign_plan

    envelope = tmp_path / "plan.signed.json"
    envelope.write_bytes(sign_plan(plan_from_file(PLAN_FILE, now=utc_now()), PrivateKey.load(people["exec-bot"])).to_json())
    result = writ("plan", "submit", envelope, code=1)
    assert re.fullmatch(r"error\[signature_invalid\]: plan signed by key [0-9a-f]{12} of principal 'exec-bot' "
                        r"\(an executor key\), expected a key of a planner\n", result.stderr)


def test_text_from_a_plan_cannot_drive_the_terminal(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    doc = {**PLAN_FILE, "title": "Fix \x1b[2J\x1b[32mAPPROVED\u202e"}
    doc["steps"] = [{**PLAN_FILE["steps"][0], "args": {"path": "/repo/a", "content": "x\x1b]0;pwned\x07\u2066"}}]  # type: ignore[index]
    plan_id, envelope = signed_plan(writ, people, tmp_path, doc)
    writ("plan", "submit", envelope)
    for out in (writ("plan", "show", plan_id).stdout, writ("plan", "list").stdout):
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out and "\u2066" not in out
    assert "Fix \\u001b[2J\\u001b[32mAPPROVED\\u202e" in writ("plan", "show", plan_id).stdout
    assert safe("a\u200bb\nc") == "a\\u200bb\\nc"


# -- --json: what programs read ------------------------------------------------------------------------


def test_empty_lists_as_json(writ: Writ) -> None:
    for command in (["principals", "list"], ["keys", "list"], ["plan", "list"]):
        assert json.loads(writ(*command, "--json").stdout) == []


def test_lists_show_and_verify_as_json(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    plan_id, envelope = submitted(writ, people, tmp_path)
    writ("approve", plan_id, "--key", people["alice"], "--comment", "diff reviewed")

    listed = {p["name"]: p for p in json.loads(writ("principals", "list", "--json").stdout)}
    assert listed["alice"] == {"name": "alice", "role": "approver", "groups": ["code-owners"],
                               "keys": {"valid": 1, "total": 1}, "email": None}
    keys = json.loads(writ("keys", "list", "--json").stdout)
    assert len(keys) == 5 and all(re.fullmatch(r"sha256:[0-9a-f]{64}", k["key_id"]) for k in keys)
    assert {k["status"] for k in keys} == {"valid"} and {k["revoked_at"] for k in keys} == {None}
    assert [k["principal"] for k in json.loads(writ("keys", "list", "--principal", "bob", "--json").stdout)] == ["bob"]

    plans = json.loads(writ("plan", "list", "--json").stdout)
    assert [(p["id"], p["state"], p["planner"], p["title"]) for p in plans] == [
        (plan_id, "pending", "plan-bot", PLAN_FILE["title"])]
    assert json.loads(writ("plan", "list", "--state", "approved", "--json").stdout) == []

    shown = json.loads(writ("plan", "show", plan_id[7:15], "--json").stdout)
    assert (shown["id"], shown["state"], shown["signature"]) == (plan_id, "pending", {"ok": True, "problem": None})
    assert shown["plan"]["steps"][0]["args"] == PLAN_FILE["steps"][0]["args"]  # type: ignore[index]
    assert (shown["approvals"]["count"], shown["approvals"]["quorum"]) == (1, 2)
    assert shown["approvals"]["missing"] == ["1 more approval"] and shown["claims"] == []
    assert [(d["approver"], d["decision"], d["comment"], d["verdict"]) for d in shown["decisions"]] == [
        ("alice", "approve", "diff reviewed", "counted")]

    pending = json.loads(writ("plan", "verify", plan_id, "--json", code=3).stdout)
    assert (pending["verdict"], pending["state"], pending["problems"]) == ("not_approved", "pending", [])
    assert pending["approvals"]["approvers"] == ["alice"] and pending["signature"]["ok"] is True
    writ("approve", plan_id, "--key", people["bob"])
    approved = json.loads(writ("plan", "verify", envelope, "--json").stdout)
    assert (approved["verdict"], approved["state"], approved["in_store"]) == ("verified", "approved", True)
    assert approved["plan_id"] == plan_id and approved["approvals"]["approved"] is True


def test_approved_plan_verified_after_its_expiry_is_not_approved(writ: Writ, people: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    # 2 of 2 approvals, never begun: after its expiry it can never run, so no VERIFIED and no exit 0
    plan_id, _ = submitted(writ, people, tmp_path)
    writ("approve", plan_id, "--key", people["alice"])
    writ("approve", plan_id, "--key", people["bob"])
    assert json.loads(writ("plan", "verify", plan_id, "--json").stdout)["verdict"] == "verified"
    later = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")  # PLAN_FILE expires in 2h
    doc = json.loads(writ("plan", "verify", plan_id, "--at", later, "--json", code=3).stdout)
    assert (doc["verdict"], doc["state"], doc["problems"]) == ("not_approved", "approved", [])
    assert writ("plan", "verify", plan_id, "--at", later, code=3).stdout.rstrip().endswith(": NOT APPROVED")


def test_verify_as_json_names_what_failed(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    _, envelope = submitted(writ, people, tmp_path)
    env = json.loads(envelope.read_bytes())
    env["payload"] = base64.b64encode(base64.b64decode(env["payload"]).replace(b"README", b"Makefile")).decode()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(env))
    doc = json.loads(writ("plan", "verify", tampered, "--json", code=1).stdout)
    assert doc["verdict"] == "failed" and doc["signature"]["ok"] is False
    assert doc["problems"][0].startswith(f"FAILED plan signature of {tampered}: plan signature does not verify")


def test_json_output_cannot_drive_the_terminal_either(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    title = "Fix \x1b[2J\x1b[32mAPPROVED\u202e"
    plan_id, envelope = signed_plan(writ, people, tmp_path, {**PLAN_FILE, "title": title})
    writ("plan", "submit", envelope)
    for out in (writ("plan", "show", plan_id, "--json").stdout, writ("plan", "list", "--json").stdout):
        assert out.isascii() and "\x1b" not in out
    assert json.loads(writ("plan", "show", plan_id, "--json").stdout)["plan"]["title"] == title


# -- every command documents itself -------------------------------------------------------------------


def _commands() -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for group in (principals, keys, trust, plan, tools):
        out.append((group.name or "", group))
        out += [(f"{group.name} {n}", c) for n, c in group.commands.items()]  # type: ignore[attr-defined]
    return out + [("approve", approve), ("reject", reject)]


@pytest.mark.parametrize(("name", "command"), _commands(), ids=[n for n, _ in _commands()])
def test_help_has_an_example(name: str, command: click.Command) -> None:
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0 and "Example" in result.output
    assert main.get_command(click.Context(main), name.split()[0]) is not None


def test_an_operator_aborts_a_plan_and_says_why(writ: Writ, people: dict[str, Path], settings: Settings,
                                                tmp_path: Path) -> None:
    from writ.attestations.audit import AuditLog
    from writ.engine.core.db import open_database

    plan_id, _ = submitted(writ, people, tmp_path)
    out = writ("plan", "abort", plan_id[7:15], "--reason", "session locked after a violation").stdout
    assert out.strip() == f"plan {plan_id[:19]}.. aborted (was pending; 0 step(s) had been claimed)"
    assert "aborted" in writ("plan", "list", "--state", "aborted").stdout
    with open_database(settings, create=False) as store:
        moved = [e.payload for e in AuditLog(store).tail(1000) if e.payload.get("plan_id") == plan_id]
    assert any("session locked after a violation" in json.dumps(p) for p in moved), moved
    # An ended plan stays ended; the operator is told why nothing happened.
    again = writ("plan", "abort", plan_id, "--reason", "twice", code=1)
    assert again.output.startswith("error[illegal_transition]: a plan in state aborted cannot abort")
    # An approval arriving after the abort cannot revive it.
    writ("approve", plan_id, "--key", people["alice"], code=1)
    assert "aborted" in writ("plan", "show", plan_id).stdout


def test_abort_needs_a_reason(writ: Writ, people: dict[str, Path], tmp_path: Path) -> None:
    plan_id, _ = submitted(writ, people, tmp_path)
    assert "Missing option '--reason'" in writ("plan", "abort", plan_id, code=2).output
    assert "must say why" in writ("plan", "abort", plan_id, "--reason", " ", code=1).output
    assert "pending" in writ("plan", "show", plan_id).stdout
