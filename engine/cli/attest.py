"""``writ attest``: export a plan's attestation bundle, and verify one offline (ADR 0020).

    $ writ attest export 3f2a9c0d -o plan.bundle.json
    wrote plan.bundle.json: plan sha256:3f2a9c0d.., 9 parts, sha256:...
    $ writ attest export --since 2026-11-01 --until 2026-12-01 -o evidence/   # each plan that ended then
    [1/17] sha256:ab12cd34ef56.. 1.2 MB written
    $ writ attest verify plan.bundle.json --trust trust-root.json
    bundle OK: plan sha256:3f2a... by plan-bot, approved by alice, bob; 2 step(s) run, state completed; ...

``verify`` opens no database and no network: the bundle, the trust root (``writ trust export``)
and, if given, a checkpoint kept apart. Exit 0 when the bundle verifies, 1 naming the first
failed check (``error[verification_failed]: approvals: ...``; with ``--json``,
``{"ok": false, "check": "approvals", ...}``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import JSON_OPTION, echo_json, read_bounded, services, write_new
from writ.engine.core.errors import InputError
from writ.engine.core.timeutil import utc_now
from writ.plans.canonical import sha256_digest

MAX_FILE_BYTES = 256 * 1024 * 1024


@click.group("attest")
def attest() -> None:
    """Export a plan's attestation bundle; verify one offline with only the trust root.

    \b
    Example:
      writ attest export 3f2a9c0d -o plan.bundle.json
      writ attest verify plan.bundle.json --trust trust-root.json
    """


@attest.command("export")
@click.argument("plan_ref", metavar="[PLAN]", required=False)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="With PLAN: the bundle file. With --since: the directory for <plan hex>.bundle.json "
              "(made if missing). An existing file is never overwritten.")
@click.option("--since", metavar="T", help="Every plan completed, failed or aborted at or after T "
              "(ISO 8601 with Z or an offset, or YYYY-MM-DD: midnight UTC).")
@click.option("--until", metavar="T", help="...and before T (same forms; default: now). Needs --since.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of {plan_id, path, sha256, bytes, status} on stdout.")
@writ_command
def export(plan_ref: str | None, output: Path, since: str | None, until: str | None, as_json: bool) -> None:
    """Write a plan's bundle, or one per plan that ended in a period: envelopes, what ran, proven audit entries.

    PLAN is a plan id or a unique prefix of its hex digits. The manifest is signed by the
    instance key (`writ init`); a fresh checkpoint of the audit log is signed for the proofs.

    With --since T [--until T] instead of PLAN: every plan that was completed, failed or aborted
    in [since, until) gets DIR/<plan hex>.bundle.json, with progress on stderr. A file already
    there is kept, never overwritten (running a period again exports only what is missing);
    kept only if it is a bundle of that plan, else that plan fails (file_exists). A plan whose
    bundle cannot be made is reported and the others go on; the exit status is then 1.

    \b
    Example:
      writ attest export 3f2a9c0d -o plan.bundle.json
      writ attest export --since 2026-11-01 --until 2026-12-01 -o evidence/2026-11/
    """
    if since is not None or until is not None:
        if plan_ref is not None:
            raise InputError(f"give PLAN ({plan_ref}) or --since/--until, not both: PLAN exports one plan to a "
                             "file, --since every plan that ended in a period to a directory")
        if since is None:
            raise InputError("--until needs --since: the period is [--since, --until)")
        _export_period(since, until, output, as_json)
        return
    if plan_ref is None:
        raise InputError("give PLAN (a plan id or a prefix of its hex digits), or --since T [--until T] for "
                         "every plan that ended in a period")
    from writ.engine.wiring.bundles import export_bundle

    with services() as w:
        plan_id = w.plans.resolve(plan_ref)
        raw = export_bundle(w, plan_id)
    write_new(output, raw, "bundle")
    if as_json:
        echo_json([{"plan_id": plan_id, "path": str(output), "sha256": sha256_digest(raw), "bytes": len(raw),
                    "status": "written"}])
        return
    click.echo(f"wrote {output}: plan {plan_id}, {len(raw)} bytes, {sha256_digest(raw)}")


def _export_period(since: str, until: str | None, out_dir: Path, as_json: bool) -> None:
    """``writ attest export --since``: progress on stderr, a summary line, exit 1 if a plan failed."""
    from writ.engine.wiring.bundle_period import export_period, period, progress_line, summary_line

    start, end = period(since, until, now=utc_now())
    with services() as w:
        results = []
        for done in export_period(w, start, end, out_dir):
            click.echo(progress_line(done), err=True)
            results.append(done)
    click.echo(summary_line(results, start, end, out_dir), err=as_json)
    if as_json:
        echo_json([r.as_json() for r in results])
    if any(r.status == "failed" for r in results):
        sys.exit(1)


@attest.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--trust", "trust_file", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The trust root (`writ trust export`), with the instance key.")
@click.option("--checkpoint", "checkpoint_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A signed checkpoint you kept apart (one note): of the bundle's tree, or an older one it proves extended.")
@click.option("--proof", "proof_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="For a --checkpoint LATER than the bundle's: the proof from the bundle's tree to it "
              "(`writ audit consistency --old N --new M -o FILE`).")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path, exists=True),
              help="Your policy: the policy repository's directory or an OPA bundle file. Every policy revision "
              "the bundle uses must be its revision; without it, the report lists the revisions used.")
@JSON_OPTION
@writ_command(store="none", offline=True)  # an auditor verifies offline: no data directory, no database
def verify(bundle: Path, trust_file: Path, checkpoint_file: Path | None, proof_file: Path | None,
           policy_path: Path | None, as_json: bool) -> None:
    """Verify a bundle offline: signatures, digests, approvals, steps, audit proofs; name the first failure.

    No database and no network. The approval requirement and every policy decision about the
    plan's calls are re-evaluated with the policy bundles the bundle carries (ADR 0022), and the
    bundle's keys are checked against --trust. Exit 0 with a short report, 1 naming the failed check.
    With --json: {ok: true, plan_id, planner, approvers, steps_run, retries, state, entries,
    checkpoint_size, decisions_replayed, policy_revisions, policy_checked, requirement_note},
    or {ok: false, check, code, message} (exit 1) for a refused bundle.

    \b
    Example:
      writ attest verify plan.bundle.json --trust trust-root.json
      writ attest verify plan.bundle.json --trust trust-root.json --checkpoint later.note --proof proof.json
      writ attest verify plan.bundle.json --trust trust-root.json --policy ../policy-repo/policies
    """
    from writ.engine.policy.offline import policy_revision_of, verify_offline

    held = read_bounded(checkpoint_file, "checkpoint", 1 << 16).decode(errors="replace") if checkpoint_file else None
    proof = read_bounded(proof_file, "consistency proof", 1 << 20) if proof_file else None
    revision = policy_revision_of(policy_path) if policy_path else None
    # a refusal is a BundleError: writ_command prints it, with --json as {ok: false, check, code, message}
    report = verify_offline(read_bounded(bundle, "bundle", MAX_FILE_BYTES),
                            read_bounded(trust_file, "trust root", MAX_FILE_BYTES), held_note=held, held_proof=proof,
                            policy_revision=revision)
    if as_json:
        echo_json(report.as_json())
        return
    click.echo(report.summary())
