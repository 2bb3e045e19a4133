"""``writ plan`` and ``writ approve|reject``: signed plans from a file to an approved, verified plan.

    $ writ tools list --config writ.toml            # each write's server, tool and definition digest
    $ writ plan sign plan.json --key .writ/keys/plan-bot-3f2a9c0d41be.pem --config writ.toml
    $ writ plan submit plan.signed.json
    $ writ approve 3f2a9c --key alice.pem --comment "diff reviewed"
    alice approved plan sha256:3f2a9c0d41be.. (now pending)
    1/2 approvals (alice); missing: 1 more approval
    $ writ plan verify 3f2a9c                       # exit 0 VERIFIED, 1 FAILED, 3 NOT APPROVED

Times are UTC. Text that came from a plan or an approval (titles, arguments, comments) is
printed with control and bidirectional characters escaped, so a plan cannot dress itself up
on an approver's terminal.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import click

from writ.engine.cli import plan_report as report
from writ.engine.cli.common import writ_command
from writ.engine.cli.plan_file import check_signer, check_steps_in_data, check_steps_upstream, plan_from_file
from writ.engine.cli.support import JSON_OPTION, echo_json, read_bounded, safe, services, shown_time, table, write_new
from writ.engine.cli.workflow import call_workflow, submit_and_start
from writ.engine.core import reasons
from writ.engine.core.errors import InputError, NotFoundError, StoreError, WritError
from writ.engine.core.timeutil import parse_iso, utc_now
from writ.plans.canonical import parse_strict
from writ.plans.keys import PrivateKey, short_key_id
from writ.plans.lifecycle import PlanState
from writ.plans.models import PlanLimits, short_plan_id
from writ.plans.statements import Decision, sign_approval, sign_plan

if TYPE_CHECKING:
    from writ.engine.wiring.services import Services


@click.group("plan")
def plan() -> None:
    """Sign, submit, list, show, verify and abort plans.

    \b
    Example:
      writ plan sign examples/plan.json --key plan-bot.pem -o plan.signed.json
      writ plan submit plan.signed.json
    """


@plan.command("sign")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The planner's private key file (a valid trusted key of the plan's planner).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Check each step against the upstreams of this gateway config (see `writ tools list`).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Envelope to write (default: FILE with .signed.json; never overwritten).")
@writ_command
def plan_sign(file: Path, key_file: Path, config_path: Path | None, output: Path | None) -> None:
    """Sign the plan in FILE with the planner's key: fills created_at and a nonce, writes a DSSE envelope.

    FILE is JSON: title, rationale, planner, steps [{server, tool, definition_digest,
    args}], and optionally ordered, expires_in ("4h", "30m", seconds; default 4h) or
    expires_at. Prints the plan id.

    Refused, as the gateway refuses a proposal: a key that is not a valid trusted key of
    the plan's planner (signing_key_untrusted); one of Writ's own tools (plan_invalid); a
    step that only reads (step_not_a_write); a tool nobody offers (tool_unknown). With
    --config, the upstreams are started and each step must be one of their tools, classed
    a write, with the definition digest it has now (step_mismatch otherwise). Without it,
    each step's tool must be a write in the policy data (data.writ.tools); its digest is
    checked when the plan runs.

    \b
    Example:
      writ keys new --principal plan-bot --out plan-bot.pem
      writ plan sign examples/plan.json --key plan-bot.pem -o plan.signed.json
      writ tools list --config examples/writ.toml      # each write's server, tool and digest
      writ plan sign examples/plan.json --key plan-bot.pem --config examples/writ.toml -o checked.json
    """
    from writ.engine.cli.tools import list_tools, tools_data

    limits = PlanLimits()
    doc = parse_strict(read_bounded(file, "plan file", limits.max_plan_bytes), max_bytes=limits.max_plan_bytes,
                       max_depth=limits.max_json_depth)
    now = utc_now()
    new_plan = plan_from_file(doc, now=now)
    new_plan.check_limits(limits)
    key = PrivateKey.load(key_file)
    with services() as w:
        check_signer(w.trust, key, key_file, new_plan, now=now)
        if config_path is None:
            check_steps_in_data(new_plan, tools_data(w.policy))
        else:
            check_steps_upstream(new_plan, list_tools(config_path, w.policy), config_path)
    envelope = sign_plan(new_plan, key)
    target = output if output is not None else file.with_name(file.name.removesuffix(".json") + ".signed.json")
    write_new(target, envelope.to_json() + b"\n", "envelope")
    click.echo(new_plan.id)
    click.echo(f"signed by key {short_key_id(key.key_id)} as planner {new_plan.planner}; wrote {target}", err=True)


@plan.command("submit")
@click.argument("envelope_file", type=click.Path(path_type=Path, dir_okay=False))
@writ_command
def plan_submit(envelope_file: Path) -> None:
    """Submit a signed plan envelope: its planner signature is checked, then it waits for approvals.

    Its approval workflow runs on Temporal: `writ serve` must be running (it starts Temporal
    unless WRIT_TEMPORAL_ADDRESS names one), else error[workflow_unavailable] and nothing is stored.

    \b
    Example:
      writ plan sign examples/plan.json --key plan-bot.pem -o plan.signed.json
      writ plan submit plan.signed.json
    """
    limits = PlanLimits()
    # `writ plan sign` ends the file with a newline; the envelope is the bytes before it.
    raw = read_bounded(envelope_file, "envelope", limits.max_envelope_bytes).rstrip(b"\n")
    with services() as w:
        record = submit_and_start(w, raw)
        status = w.plans.status(record.id)
    click.echo(f"plan {record.id} {record.state.value}: {safe(record.title)}")
    click.echo(report.status_line(status.result))
    click.echo(f"its approval workflow runs on Temporal ({w.settings.temporal.target}); approvers: "
               f"writ approve {record.id[7:19]} --key <approver key file>")


@plan.command("list")
@click.option("--state", type=click.Choice([s.value for s in PlanState]), default=None, help="Only plans in this state.")
@JSON_OPTION
@writ_command
def plan_list(state: str | None, as_json: bool) -> None:
    """List plans, oldest first.

    With --json: a list of {id, state, planner, executor, title, created_at, expires_at,
    submitted_at, updated_at}.

    \b
    Example:
      writ plan list --state pending
      writ plan list --json
    """
    with services() as w:
        found = w.plans.list_plans(state)
    if as_json:
        echo_json([{"id": r.id, "state": r.state.value, "planner": r.planner, "executor": r.executor,
                    "title": r.title, "created_at": r.created_at, "expires_at": r.expires_at,
                    "submitted_at": r.submitted_at, "updated_at": r.updated_at} for r in found])
        return
    if not found:
        click.echo("no plans" + (f" in state {state}" if state else ""))
        return
    rows = [("PLAN", "STATE", "PLANNER", "EXPIRES", "TITLE")]
    rows += [(r.id[7:19], r.state.value, r.planner, shown_time(r.expires_at), safe(r.title)[:60]) for r in found]
    table(rows)


@plan.command("show")
@click.argument("plan_ref", metavar="PLAN")
@click.option("--envelope", is_flag=True, help="Print the stored signed envelope (DSSE JSON), byte for byte.")
@JSON_OPTION
@writ_command
def plan_show(plan_ref: str, envelope: bool, as_json: bool) -> None:
    """Show a plan (a full id or a unique prefix): every step in full, its state, its approvals.

    With --json: {id, state, executor, signature: {ok, problem}, plan (as signed), claims,
    approvals (the count), decisions (each stored approval or rejection and whether it counted)}.

    \b
    Example:
      writ plan show 3f2a9c
      writ plan show 3f2a9c --json
      writ plan show 3f2a9c --envelope > plan.signed.json
    """
    with services() as w:
        record = w.plans.get(w.plans.resolve(plan_ref))
        if envelope:
            click.echo(record.envelope.rstrip(b"\n"))
            return
        approvals = w.plans.approvals(record.id)
        claims = {c.step_index: c for c in w.plans.claims(record.id)}
        problem, status = None, None
        try:
            status = w.plans.status(record.id, now=utc_now())
        except WritError as e:
            problem = e
    shown = report.ShownPlan(record, status.plan if status else record.unverified_plan(), approvals, claims,
                             status.result if status else None, problem)
    if as_json:
        echo_json(report.plan_json(shown))
    else:
        report.print_plan(shown)


@plan.command("verify")
@click.argument("target", metavar="FILE|PLAN")
@click.option("--trust", "trust_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Verify against an exported trust root (writ trust export) instead of the trust store.")
@click.option("--at", "at", default=None, metavar="TIME",
              help="Verify as of TIME (ISO 8601; default now), e.g. when the plan began.")
@JSON_OPTION
@writ_command(store="optional")  # an auditor verifies a file offline (--trust) with no data directory
def plan_verify(target: str, trust_file: Path | None, at: str | None, as_json: bool) -> None:
    """Verify a plan envelope file or a stored plan, with its stored approvals and its state.

    Checks the planner's signature (which key, which principal), each approval
    (signature, key validity, eligibility), the count by the verifier and by the
    policy, and that the stored state is backed by them. The last line says it:
    "signature OK; state pending; approvals 0/2 (missing: code-owners, 1 more approval): NOT APPROVED".

    \b
    Exit status:
      0  VERIFIED: everything verifies and the approvals meet the requirement;
         or SIGNATURE VERIFIED (--json verdict signature_verified): an envelope the plan
         store does not hold, whose signature verifies; its approvals are unknown
      1  FAILED: the signature, an approval or the state does not verify (or an error)
      3  NOT APPROVED: everything verifies, but the plan is pending, rejected or expired

    With --json: {target, verdict (verified, signature_verified, not_approved, failed), problems, plan_id,
    planner, signature, in_store, state, approvals (the count), decisions}; same exit status.

    \b
    Example:
      writ plan verify 3f2a9c --json
      writ plan show 3f2a9c --envelope > plan.signed.json && writ trust export -o trust-root.json
      writ plan verify plan.signed.json --trust trust-root.json --at 2026-11-22T10:00:00Z
    """
    now = parse_iso(at, "--at") if at else utc_now()
    limits = PlanLimits()
    path = Path(target)
    if not path.is_file() and ("/" in target or path.suffix):
        raise InputError(f"no envelope file {target} (and it is not a plan id)")
    offline = trust_file is not None and path.is_file()  # an auditor may have no data directory at all
    with ExitStack() as stack:
        try:
            w = stack.enter_context(services(create=False))
        except StoreError:
            if not offline:
                raise
            w = None
        if trust_file is not None:
            from writ.plans.trust_store import load_trust_root

            trust_set = load_trust_root(read_bounded(trust_file, "trust root", limits.max_envelope_bytes))
        else:
            trust_set = _opened(w).trust.trust_set()  # without --trust, opening the store has not failed
        if path.is_file():
            record, what = None, str(path)
            raw = read_bounded(path, "envelope", limits.max_envelope_bytes).rstrip(b"\n")
        else:
            record = _opened(w).plans.get(_opened(w).plans.resolve(target))
            raw, what = record.envelope, f"stored plan {short_plan_id(record.id)}"
        outcome = report.verify_plan(raw, what, record, w, trust_set, now=now, limits=limits)
    if as_json:
        echo_json(report.outcome_json(outcome))
    else:
        report.print_outcome(outcome)
    sys.exit(outcome.exit_code)


@plan.command("abort")
@click.argument("plan_ref", metavar="PLAN")
@click.option("--reason", required=True, help="Why: recorded in the audit log with the abort.")
@writ_command
def plan_abort(plan_ref: str, reason: str) -> None:
    """Abort a plan that has not ended (e.g. the plan of a locked session): no further step of it can run.

    Steps that already ran stay recorded; a plan that completed, failed, expired, was rejected
    or aborted cannot be aborted.

    \b
    Example:
      writ plan abort 3f2a9c --reason "executor session locked after a violation"
    """
    if not reason.strip():
        raise InputError("--reason must say why the plan is aborted", code=reasons.INPUT_INVALID)
    with services() as w:
        plan_id = w.plans.resolve(plan_ref)
        before = w.plans.get(plan_id).state
        w.plans.finish(plan_id, "aborted", reason=reason.strip())
        ran = len(w.plans.claims(plan_id))
        told = _tell_workflow(w, plan_id)
    click.echo(f"plan {short_plan_id(plan_id)} aborted (was {before.value}; {ran} step(s) had been claimed)")
    if told is not None:
        click.echo(f"warning: its approval workflow was not told ({told}); it reads the plan's state before its "
                   "next reminder or at expiry (hourly once approved)", err=True)


def _tell_workflow(w: Services, plan_id: str) -> str | None:
    """Signal ``plan_finished`` to the plan's workflow; None when told, else why not (the abort stands)."""
    try:
        call_workflow(w, lambda approvals: approvals.plan_finished(plan_id, "aborted", by="operator"))
    except WritError as e:
        return e.code
    return None


# --- approve / reject ------------------------------------------------------------------------


def _decide(plan_ref: str, key_file: Path, comment: str, decision: Decision) -> None:
    key = PrivateKey.load(key_file)
    with services() as w:
        plan_id = w.plans.resolve(plan_ref)
        try:
            mine = w.trust.key(key.key_id)
        except NotFoundError:
            raise NotFoundError(
                f"key {short_key_id(key.key_id)} in {key_file} is not in the trust store; "
                "register it with `writ keys new` (see `writ keys list`)",
                code=reasons.KEY_NOT_FOUND,
            ) from None
        envelope = sign_approval(plan_id, key, approver=mine.principal, decision=decision, comment=comment)
        raw = envelope.to_json()
        count = call_workflow(w, lambda approvals: approvals.decide(plan_id, raw, decision))
    verb = "approved" if decision == "approve" else "rejected"
    click.echo(f"{mine.principal} {verb} plan {short_plan_id(plan_id)} (now {count.state})")
    click.echo(count.summary)


@click.command("approve")
@click.argument("plan_ref", metavar="PLAN")
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The approver's private key file.")
@click.option("--comment", default="", help="Why; stored in the signed approval.")
@writ_command
def approve(plan_ref: str, key_file: Path, comment: str) -> None:
    """Approve PLAN (a full id or a unique prefix): sign locally with your key, submit, show the count.

    The approval is sent to the plan's workflow on Temporal: `writ serve` must be running, else
    error[workflow_unavailable] and nothing counts.

    \b
    Example:
      writ keys new --principal alice --out alice.pem
      writ approve 3f2a9c --key alice.pem --comment "diff reviewed"
    """
    _decide(plan_ref, key_file, comment, "approve")


@click.command("reject")
@click.argument("plan_ref", metavar="PLAN")
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The approver's private key file.")
@click.option("--comment", default="", help="Why; stored in the signed rejection.")
@writ_command
def reject(plan_ref: str, key_file: Path, comment: str) -> None:
    """Reject PLAN (a full id or a unique prefix): one counted rejection stops it.

    \b
    Example:
      writ keys new --principal carol --out carol.pem
      writ reject 3f2a9c --key carol.pem --comment "touches prod config"
    """
    _decide(plan_ref, key_file, comment, "reject")


def _opened(w: Services | None) -> Services:
    """The stores ``plan verify`` opened; only an offline check (``--trust`` and a file) runs without them."""
    if w is None:
        raise StoreError("this check needs the data directory's stores: run it where `writ init` was run",
                         code=reasons.STORE_MISSING)
    return w
