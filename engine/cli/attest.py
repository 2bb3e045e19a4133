"""``writ attest``: export a plan's attestation bundle, and verify one offline (ADR 0020).

    $ writ attest export 3f2a9c0d -o plan.bundle.json
    wrote plan.bundle.json: plan sha256:3f2a9c0d.., 9 parts, sha256:...
    $ writ attest verify plan.bundle.json --trust trust-root.json
    bundle OK: plan sha256:3f2a... by plan-bot, approved by alice, bob; 2 step(s) run, state completed; ...

``verify`` opens no database and no network: the bundle, the trust root (``writ trust export``)
and, if given, a checkpoint kept apart. Exit 0 when the bundle verifies, 1 naming the first
failed check (``error[verification_failed]: approvals: ...``).
"""

from __future__ import annotations

from pathlib import Path

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import read_bounded, services, write_new
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
@click.argument("plan_ref", metavar="PLAN")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Bundle file to write (never overwritten).")
@writ_command
def export(plan_ref: str, output: Path) -> None:
    """Write the plan's bundle: its envelopes, what ran, its audit entries proven against a signed checkpoint.

    PLAN is a plan id or a unique prefix of its hex digits. The manifest is signed by the
    instance key (`writ init`); a fresh checkpoint of the audit log is signed for the proofs.

    \b
    Example:
      writ attest export 3f2a9c0d -o plan.bundle.json
    """
    from writ.engine.wiring.bundles import export_bundle

    with services() as w:
        plan_id = w.plans.resolve(plan_ref)
        raw = export_bundle(w, plan_id)
    write_new(output, raw, "bundle")
    click.echo(f"wrote {output}: plan {plan_id}, {len(raw)} bytes, {sha256_digest(raw)}")


@attest.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--trust", "trust_file", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The trust root (`writ trust export`), with the instance key.")
@click.option("--checkpoint", "checkpoint_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A signed checkpoint you kept apart (one note): of the bundle's tree, or an older one it proves extended.")
@click.option("--proof", "proof_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="For a --checkpoint LATER than the bundle's: the proof from the bundle's tree to it "
              "(`writ audit consistency --old N --new M -o FILE`).")
@writ_command(store="none")  # an auditor verifies offline: no data directory, no database
def verify(bundle: Path, trust_file: Path, checkpoint_file: Path | None, proof_file: Path | None) -> None:
    """Verify a bundle offline: signatures, digests, approvals, steps, audit proofs; name the first failure.

    No database and no network. The approval requirement and every policy decision about the
    plan's calls are re-evaluated with the policy bundles the bundle carries (ADR 0022), and the
    bundle's keys are checked against --trust. Exit 0 with a short report, 1 naming the failed check.

    \b
    Example:
      writ attest verify plan.bundle.json --trust trust-root.json
      writ attest verify plan.bundle.json --trust trust-root.json --checkpoint later.note --proof proof.json
    """
    from writ.engine.policy.offline import verify_offline

    held = read_bounded(checkpoint_file, "checkpoint", 1 << 16).decode(errors="replace") if checkpoint_file else None
    proof = read_bounded(proof_file, "consistency proof", 1 << 20) if proof_file else None
    report = verify_offline(read_bounded(bundle, "bundle", MAX_FILE_BYTES),
                            read_bounded(trust_file, "trust root", MAX_FILE_BYTES), held_note=held, held_proof=proof)
    click.echo(report.summary())
