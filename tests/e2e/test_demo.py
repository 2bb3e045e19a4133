"""`writ demo` end to end, as a user runs it: a subprocess, its narration, its exit code, what it left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.gateway import commit_count, require_upstreams

from writ.attestations.audit import AuditLog
from writ.engine.core.db import open_database
from writ.engine.core.settings import Settings
from writ.engine.demo.scene import writ_argv

DEMO = [sys.executable, "-m", "writ.engine.cli.demo"]  # the `writ demo` command


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEMO, *map(str, args)], capture_output=True, text=True, timeout=240, check=False)


def test_the_demo_runs_end_to_end_and_says_what_happened(tmp_path: Path) -> None:
    require_upstreams()
    data = tmp_path / "demo-data"
    done = run("--data-dir", data)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"data dir   {data}" in out
    for line in [
        r"plan-bot\s+planner\s+key [0-9a-f]{12}",
        r"alice\s+approver\s+key [0-9a-f]{12}\s+groups: code-owners",
        r"allowed\s+plan-bot git__git_status\s+On branch main",
        r"A: plan sha256:[0-9a-f]{12}\.\. is pending: Add a CHANGELOG for 0.1.0",
        r"DENIED\s+exec-bot fs__write_file CHANGELOG.md\s+\[plan_required\]",
        r"DENIED\s+exec-bot writ__writ_plan_begin A\s+\[plan_not_approved\]",
        r"DENIED\s+plan-bot fs__write_file CHANGELOG.md\s+\[planner_cannot_write\]",
        r"approval link: http://127\.0\.0\.1:8420/plans/sha256:[0-9a-f]{64}$",
        r"bob\s+approves plan A .*: 2/2 \(alice, bob\); plan A approved",
        r"allowed\s+exec-bot \[2\] git__git_commit\s+Changes committed successfully",
        r"DENIED\s+exec-bot \[0\] fs__write_file again\s+\[step_already_claimed\]",
        r"DENIED\s+exec-bot fs__write_file docs/\.\./\.\.\s+\[step_not_in_plan\]",
        r"has a '\.\.' segment",
        r"DENIED\s+exec-bot fs__write_file other text\s+\[session_locked, step_not_in_plan\]",
        (r"plan sha256:[0-9a-f]{12}\.\. completed\s+Add a CHANGELOG for 0.1.0: \[0\] succeeded, \[1\] succeeded, "
        r"\[2\] succeeded"),
        r"audit log OK: \d+ entries",
        r"^\d+\. Evidence for the auditor: plan A's bundle, checked offline with only the trust root$",
        r"operator \$ writ attest export [0-9a-f]{12} -o evidence/plan-A\.bundle\.json$",
        r"^\s+wrote evidence/plan-A\.bundle\.json: plan\s",
        r"operator \$ writ trust export -o evidence/trust-root\.json$",
        r"operator \$ writ audit checkpoint > evidence/checkpoint\.note    \(the log's tree of \d+ entries, signed\)",
        r"auditor  \$ cd auditor && WRIT_HOME=no-data-dir writ attest verify plan-A\.bundle\.json --trust trust-root\.json$",
        r"^\s+bundle OK: plan sha256:[0-9a-f]{64} by plan-bot,",
        r"^\d+\. Tampering: on a COPY of the demo's database, the last audit entry is deleted$",
        r"\$ writ audit verify --data-dir tampered --checkpoint auditor/checkpoint\.note$",
        (r"^demo OK: plan A completed \(3 steps, each ran once\); plan B aborted after exec-bot left it; 6 calls "
        r"refused \(plan_required, plan_not_approved, planner_cannot_write, step_already_claimed, "
        r"step_not_in_plan x2\); audit log verified \(\d+ entries\); plan A's bundle verified offline with only "
        r"the trust root; deleting audit entry \d+ was caught$"),
    ]:
        assert re.search(line, out, re.MULTILINE), f"missing {line!r} in:\n{out}"
    flat = " ".join(out.split())  # narration wraps long lines
    assert "approved by alice, bob; 3 step(s) run, state completed;" in flat
    caught = re.search(r"exit 1: audit log bad at entry (\d+) \(truncated\): the log ends at entry (\d+) but a signed "
                       r"checkpoint \(.*auditor/checkpoint\.note, line 1\) holds (\d+) entries", flat)
    assert caught, flat
    cut = int(caught.group(1))
    assert (int(caught.group(2)), int(caught.group(3))) == (cut - 1, cut) and f"deleting audit entry {cut} was" in flat

    # Approvers keep their own keys: none is in the gateway's keys directory.
    assert {k.name.split("-")[0] for k in (data / "keys").glob("*.pem")} == {"plan", "exec"}
    assert sorted(k.parent.name for k in (data / "demo" / "approvers").glob("*/*.pem")) == ["alice", "bob"]
    repo = data / "demo" / "repo"
    assert commit_count(repo) == 2 and (repo / "CHANGELOG.md").exists() and not (repo / "docs" / "usage.md").exists()
    with open_database(Settings(home=data), create=False) as store:
        report = AuditLog(store).verify()
    assert report.ok and str(report.entries) in out  # the tampering was on a copy: the demo's own log is whole
    assert report.entries == cut  # the entry deleted on the copy was the last one

    # The auditor held three files and nothing else; what they hold verifies again, here, offline.
    auditor = data / "demo" / "auditor"
    assert sorted(p.name for p in auditor.iterdir()) == ["checkpoint.note", "plan-A.bundle.json", "trust-root.json"]
    again = subprocess.run(writ_argv("attest", "verify", "plan-A.bundle.json", "--trust", "trust-root.json"), cwd=auditor, capture_output=True, text=True, timeout=60,
                           env={**no_writ_settings(), "WRIT_HOME": str(tmp_path / "nowhere")}, check=False)
    assert again.returncode == 0 and again.stdout.startswith("bundle OK: plan sha256:"), again.stdout + again.stderr
    assert not (tmp_path / "nowhere").exists()


def no_writ_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WRIT_")}


def test_the_demo_wants_a_fresh_data_directory(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    done = run("--data-dir", tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"error[demo_data_dir_not_empty]: {tmp_path} is not empty")
