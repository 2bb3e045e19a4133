"""``writ demo``'s last acts: plan B aborted, the audit log verified, the evidence an auditor gets, checked.

    epilogue(scene, stores, n, plan_a, plan_b)   # after the agents' story (writ.engine.demo.story)
    # ... audit_section: `writ audit verify`; show_evidence: the sections below; then 'demo OK: ...'

Evidence for the auditor, each step the command a person would type, run as a subprocess:

1. The operator exports plan A's bundle (``writ attest export``) and the trust root (``writ trust
   export``), and signs a checkpoint of the log (``writ audit checkpoint``). The auditor keeps
   copies of the three in a directory of their own (``demo/auditor/``).
2. The auditor runs ``writ attest verify BUNDLE --trust TRUST_ROOT`` there, with ``WRIT_HOME``
   pointing at a directory that does not exist and no other ``WRIT_*`` setting: no data
   directory, no database, no network. Its one-line report is printed.
3. Tampering, on a COPY of the demo's SQLite database (``demo/tampered/``, with the instance key
   and no checkpoint file: whoever cuts the log can delete that too): the last audit entry is
   deleted, and ``writ audit verify --checkpoint`` with the auditor's copy of the checkpoint
   names the cut and exits 1. The demo's own log is never touched and still verifies.

Anything that does not happen as it should raises ``DemoFailed`` naming the command and its output.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from writ.attestations.audit import AuditLog
from writ.attestations.instance_key import instance_key_path
from writ.engine.demo.scene import DemoFailed, Narrator, Scene, writ_argv
from writ.engine.wiring.services import Services

__all__ = ["Evidence", "audit_section", "epilogue", "show_evidence"]

SQLITE_FILE = "writ.sqlite"  # where Settings puts the database when no URL is set


def _run(scene: Scene, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(writ_argv(*args), capture_output=True, text=True, check=False,  # noqa: S603 - Writ's own argv
                          cwd=cwd or scene.demo, env=env if env is not None else {**os.environ})


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _must(done: subprocess.CompletedProcess[str], what: str) -> str:
    if done.returncode != 0:
        raise DemoFailed(f"{what} failed (exit {done.returncode}): {done.stdout.strip()} {done.stderr.strip()}")
    return done.stdout


def epilogue(scene: Scene, stores: Services, n: Narrator, plan_a: str, plan_b: str) -> None:
    """An operator aborts plan B; the log is verified; the auditor's evidence is checked; ``demo OK``."""
    n.section("An operator reviews exec-bot's locked session and aborts plan B")
    n.echo(f"  (what `writ plan abort {plan_b[7:19]} --reason ...` does)")
    stores.plans.finish(plan_b, "aborted", reason="the executor left the plan; session locked")
    for plan_id in (plan_a, plan_b):
        record = stores.plans.get(plan_id)
        claims = stores.plans.claims(plan_id)
        ran = ", ".join(f"[{c.step_index}] {c.outcome}" for c in claims) or "no step ran"
        n.say(f"plan {plan_id[:19]}.. {record.state.value:<9} {record.title}: {ran}")

    entries = audit_section(scene, stores, n)
    evidence = show_evidence(scene, n, plan_a)

    refused = ", ".join(f"{code}" + (f" x{count}" if count > 1 else "") for code, count in n.refused.items())
    n.echo("")
    n.echo(f"demo OK: plan A completed (3 steps, each ran once); plan B aborted after exec-bot left it; "
           f"{sum(n.refused.values())} calls refused ({refused}); audit log verified ({entries} entries); "
           f"{evidence.summary()}")


def audit_section(scene: Scene, stores: Services, n: Narrator) -> int:
    """``writ audit verify`` on the demo's log, and what it holds by kind; the number of entries."""
    n.section("The audit log: every decision, plan event, approval, claim and result, hash-chained")
    n.say("$ writ audit verify --data-dir " + str(scene.data))
    done = _run(scene, "audit", "verify", "--data-dir", str(scene.data))
    n.say(first_line(done.stdout) or first_line(done.stderr), lines=2)
    _must(done, "writ audit verify")
    kinds = Counter(e.kind for e in AuditLog(stores.store).tail(1_000_000))
    n.say("entries: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())), lines=2)
    return sum(kinds.values())


@dataclass(frozen=True)
class Evidence:
    """What the auditor's checks showed: the bundle's report line, and the cut ``writ audit verify`` named."""

    bundle: Path
    report: str
    cut_seq: int | None  # the entry deleted on the copy; None when the database is not the data dir's SQLite
    caught: str

    def summary(self) -> str:
        tamper = (f"deleting audit entry {self.cut_seq} was caught" if self.cut_seq is not None
                  else "tampering skipped (not SQLite)")
        return f"plan A's bundle verified offline with only the trust root; {tamper}"


def show_evidence(scene: Scene, n: Narrator, plan_a: str) -> Evidence:
    """Section "Evidence for the auditor": export, verify offline, then tamper with a copy and be caught."""
    n.section("Evidence for the auditor: plan A's bundle, checked offline with only the trust root")
    evidence, auditor = scene.demo / "evidence", scene.demo / "auditor"
    evidence.mkdir()
    auditor.mkdir()
    bundle = evidence / "plan-A.bundle.json"
    data = ["--data-dir", str(scene.data)]
    steps = [(f"writ attest export {plan_a[7:19]} -o evidence/{bundle.name}",
              ["attest", "export", plan_a, "-o", str(bundle), *data]),
             ("writ trust export -o evidence/trust-root.json",
              ["trust", "export", "-o", str(evidence / "trust-root.json"), *data])]
    for shown, argv in steps:
        n.say(f"operator $ {shown}")
        n.say(_must(_run(scene, *argv), shown).strip(), indent=12, lines=3)
    note = _must(_run(scene, "audit", "checkpoint", *data), "writ audit checkpoint")
    (evidence / "checkpoint.note").write_text(note)
    size = note.splitlines()[1] if len(note.splitlines()) > 1 else "?"
    n.say(f"operator $ writ audit checkpoint > evidence/checkpoint.note    (the log's tree of {size} entries, signed)")
    for name in (bundle.name, "trust-root.json", "checkpoint.note"):
        shutil.copy2(evidence / name, auditor / name)
    n.say("the auditor keeps copies of the three in auditor/, apart from the operator's host", lines=2)
    report = _verify_offline(scene, n, auditor, bundle.name)
    cut, caught = _tamper(scene, n, auditor / "checkpoint.note")
    return Evidence(bundle, report, cut, caught)


def _verify_offline(scene: Scene, n: Narrator, auditor: Path, bundle: str) -> str:
    """``writ attest verify`` in the auditor's directory, with no data directory and no WRIT_* settings."""
    nowhere = auditor / "no-data-dir"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WRIT_")} | {"WRIT_HOME": str(nowhere)}
    n.say(f"auditor  $ cd auditor && WRIT_HOME=no-data-dir writ attest verify {bundle} --trust trust-root.json")
    done = _run(scene, "attest", "verify", bundle, "--trust", "trust-root.json", cwd=auditor, env=env)
    report = first_line(_must(done, "writ attest verify (the auditor's)"))
    if not report.startswith("bundle OK") or nowhere.exists():
        raise DemoFailed(f"the auditor's verify did not report OK without a data directory: {report}")
    n.say(report, indent=12, lines=3)
    return report


def _tamper(scene: Scene, n: Narrator, held: Path) -> tuple[int | None, str]:
    """On a copy of the database: delete the last entry; ``writ audit verify --checkpoint HELD`` must name it."""
    n.section("Tampering: on a COPY of the demo's database, the last audit entry is deleted")
    if scene.settings.database_url is not None:
        n.say(f"skipped: the demo copies its SQLite database to tamper with; this one is {scene.settings.database_url}")
        return None, ""
    copy = scene.demo / "tampered"
    copy.mkdir(mode=0o700)
    with sqlite3.connect(scene.data / SQLITE_FILE) as src, sqlite3.connect(copy / SQLITE_FILE) as dst:
        src.backup(dst)  # a consistent copy, WAL included, while the demo's stores are open
        seq = int(dst.execute("SELECT max(seq) FROM audit_log").fetchone()[0])
        dst.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))
    shutil.copy2(instance_key_path(scene.data), instance_key_path(copy))  # to check the checkpoint's signature
    n.say(f"tampered/ holds the copy, its entry {seq} (the last) deleted, and no checkpoint file: whoever cuts the "
          "log can delete that too; the auditor's copy of the checkpoint is what catches it", lines=2)
    n.say("$ writ audit verify --data-dir tampered --checkpoint auditor/checkpoint.note")
    done = _run(scene, "audit", "verify", "--data-dir", str(copy), "--checkpoint", str(held))
    caught = first_line(done.stdout) or first_line(done.stderr)
    if done.returncode != 1 or f"entry {seq}" not in caught:
        raise DemoFailed(f"writ audit verify did not name the deleted entry {seq} (exit {done.returncode}): {caught}")
    n.say(f"exit 1: {caught}", indent=12, lines=3)
    return seq, caught
