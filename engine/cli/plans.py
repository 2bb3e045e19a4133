"""``writ principals|keys|trust|plan|approve|reject``: identities, keys and signed plans from the command line.

    $ writ principals add plan-bot --role planner
    $ writ keys new --principal plan-bot            # private key to .writ/keys/plan-bot-<id>.pem (0600)
    $ writ plan sign plan.json --key .writ/keys/plan-bot-3f2a9c0d41be.pem
    $ writ plan submit plan.signed.json
    $ writ approve 3f2a9c --key ~/.writ-keys/alice.pem --comment "diff reviewed"
    alice approved plan sha256:3f2a9c0d41be.. (now pending)
    1/2 approvals (alice); missing: 1 more approval
    $ writ plan verify 3f2a9c                       # exit 1 naming what failed

Times are UTC. Text that came from a plan or an approval (titles, arguments,
comments) is printed with control and bidirectional characters escaped, so a
plan cannot dress itself up on an approver's terminal.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import click
from pydantic import ValidationError

from writ.engine.cli.common import writ_command
from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, InputError, NotFoundError, StoreError, WritError
from writ.engine.core.settings import Settings
from writ.engine.wiring.services import Services, key_file_name, keys_dir, open_services
from writ.plans import dsse
from writ.plans.assessment import Assessment, assess
from writ.plans.canonical import parse_strict
from writ.plans.keys import PrivateKey, short_key_id
from writ.plans.lifecycle import PlanState
from writ.plans.models import Plan, PlanLimits
from writ.plans.statements import Decision, sign_approval, sign_plan
from writ.plans.store import ApprovalRecord, PlanRecord
from writ.plans.trust import Role, TrustSet
from writ.plans.trust_store import load_trust_root
from writ.plans.verify import ApprovalResult, short_plan_id, verify_plan_envelope

ROLES: tuple[str, ...] = get_args(Role)
PLAN_FILE_FIELDS = ("title", "rationale", "planner", "steps", "ordered", "expires_in", "expires_at")
DEFAULT_EXPIRES_IN = timedelta(hours=4)


# --- shared ----------------------------------------------------------------------------------


@contextmanager
def _open(*, create: bool = True) -> Iterator[Services]:
    """The store, the trust store (groups from the policy set) and the plan store of the settings."""
    settings: Settings = click.get_current_context().obj
    with open_services(settings, create=create) as w:
        yield w


_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def safe(text: str, *, newlines: bool = False) -> str:
    """Text from a signed document, fit for a terminal: control and bidi characters escaped."""

    def esc(m: re.Match[str]) -> str:
        return f"\\u{ord(m.group()):04x}"

    out = _UNSAFE.sub(esc, text)
    out = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cf", "Cs", "Co") else c for c in out)
    return out if newlines else out.replace("\n", "\\n").replace("\t", "\\t")


def _time(t: datetime | None) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"


def _parse_time(text: str, what: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"{what} {text!r} is not an ISO 8601 time (e.g. 2026-11-22T10:00:00Z)") from None
    if t.tzinfo is None:
        raise InputError(f"{what} {text!r} has no timezone; add Z for UTC")
    return t


def _read(path: Path, what: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > limit:
        raise InputError(f"{what} {path} is larger than {limit} bytes", code=reasons.INPUT_TOO_LARGE)
    return data


def _write_new(path: Path, data: bytes, what: str) -> None:
    try:
        with open(path, "xb") as f:
            f.write(data)
    except FileExistsError:
        raise ConfigError(f"refusing to overwrite {path}; choose another -o", code=reasons.FILE_EXISTS) from None
    except OSError as e:
        raise ConfigError(f"cannot write {what} {path}: {e.strerror}") from None


def _status_line(result: ApprovalResult) -> str:
    """``1/2 approvals; missing: code-owners`` and the like."""
    if result.violations:
        return "not approvable: " + "; ".join(result.violations)
    if result.expired:
        return f"expired at {_time(result.expires_at)}"
    if result.rejected:
        return "rejected by " + ", ".join(r.principal for r in result.rejections)
    text = f"{len(result.approvals)}/{result.requirement.quorum} approvals"
    if result.approvals:
        text += f" ({', '.join(result.approvers)})"
    if result.missing:
        text += "; missing: " + ", ".join(result.missing)
    if result.approved:
        text += "; approved"
    return text


# --- principals ------------------------------------------------------------------------------


@click.group("principals")
def principals() -> None:
    """Add and list principals: people and agents, each with exactly one role.

    \b
    Example:
      writ principals add alice --role approver
      writ principals list
    """


@principals.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLES), help="The principal's one role.")
@writ_command
def principals_add(name: str, role: str) -> None:
    """Register principal NAME with one role. Someone who approves and audits gets two principals.

    \b
    Example:
      writ principals add plan-bot --role planner
      writ principals add alice --role approver
    """
    with _open() as w:
        p = w.trust.add_principal(name, role)
    groups = ", ".join(p.groups) or "none (groups are policy data: data.writ.groups)"
    click.echo(f"added principal {p.name} ({p.role}); groups: {groups}")


@principals.command("list")
@writ_command
def principals_list() -> None:
    """List principals with their role, their groups (from the policy data) and their keys.

    \b
    Example:
      writ principals list
    """
    with _open() as w:
        people = w.trust.principals()
        keys = w.trust.keys()
    if not people:
        click.echo("no principals; add one with `writ principals add NAME --role ROLE`")
        return
    now = datetime.now(UTC)
    rows = [("PRINCIPAL", "ROLE", "GROUPS", "KEYS")]
    for p in people:
        mine = [k for k in keys if k.principal == p.name]
        valid = sum(1 for k in mine if k.status(now) == "valid")
        rows.append((p.name, p.role, ",".join(p.groups) or "-", f"{valid} valid / {len(mine)}"))
    _table(rows)


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


# --- keys ------------------------------------------------------------------------------------


@click.group("keys")
def keys() -> None:
    """Create, list and revoke the Ed25519 keys of principals.

    \b
    Example:
      writ keys new --principal alice
      writ keys revoke 3f2a9c0d41be
    """


@keys.command("new")
@click.option("--principal", required=True, help="Whose key; it takes the principal's role.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the private key (default: <data dir>/keys/<principal>-<key id>.pem).")
@writ_command
def keys_new(principal: str, out: Path | None) -> None:
    """Generate an Ed25519 key for a principal: trust its public key, write the private key (mode 0600).

    The private key is never printed and never overwrites a file. Keep it where agents
    cannot read it.

    \b
    Example:
      writ keys new --principal alice
      writ keys new --principal plan-bot --out /run/secrets/plan-bot.pem
    """
    with _open() as w:
        who = w.trust.principal(principal)
        key = PrivateKey.generate()
        path = out if out is not None else keys_dir(w.settings) / key_file_name(who.name, key.key_id)
        key.save(path)
        try:
            w.trust.add_key(who.name, key.public_key)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    click.echo(f"key {key.key_id} for {who.name} ({who.role})")
    click.echo(f"private key written to {path} (mode 0600)")


@keys.command("list")
@click.option("--principal", default=None, help="Only this principal's keys.")
@writ_command
def keys_list(principal: str | None) -> None:
    """List trusted keys: id, principal, role, and whether each may sign now.

    \b
    Example:
      writ keys list --principal alice
    """
    with _open() as w:
        found = w.trust.keys(principal)
    if not found:
        click.echo("no keys; create one with `writ keys new --principal NAME`")
        return
    now = datetime.now(UTC)
    rows = [("KEY ID", "PRINCIPAL", "ROLE", "CREATED", "STATUS")]
    rows += [(short_key_id(k.key_id), k.principal, k.role, _time(k.created_at), k.status(now)) for k in found]
    _table(rows)


@keys.command("revoke")
@click.argument("key_id")
@click.option("--at", "at", default=None, metavar="TIME",
              help="Revoked from this time on (ISO 8601, e.g. 2026-11-22T10:00:00Z; default now).")
@writ_command
def keys_revoke(key_id: str, at: str | None) -> None:
    """Revoke key KEY_ID (a full id or a unique prefix): nothing it signs counts from TIME on.

    Approvals signed with it stop counting too, even for plans already approved.

    \b
    Example:
      writ keys revoke 3f2a9c0d41be
      writ keys revoke 3f2a9c0d41be --at 2026-11-20T00:00:00Z
    """
    when = _parse_time(at, "--at") if at else None
    with _open() as w:
        k = w.trust.revoke_key(key_id, at=when)
    click.echo(f"revoked key {short_key_id(k.key_id)} of {k.principal} ({k.role}) from {_time(k.revoked_at)}")


# --- trust -----------------------------------------------------------------------------------


@click.group("trust")
def trust() -> None:
    """Export the trust root: the public keys and groups an auditor verifies against offline.

    \b
    Example:
      writ trust export -o trust-root.json
    """


@trust.command("export")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="JSON file to write.")
@writ_command
def trust_export(output: Path) -> None:
    """Write every trusted key and the approver groups, with the time and a sha256 digest.

    Use it offline with `writ plan verify FILE --trust trust-root.json`.

    \b
    Example:
      writ trust export -o trust-root.json
    """
    with _open() as w:
        root = w.trust.export_trust_root()
    data = (json.dumps(root, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    _write_new(output, data, "trust root")
    t = root["trust"]
    click.echo(f"wrote {output}: {len(t['keys'])} keys, {len(t['groups'])} groups, digest {root['digest']}")


# --- plan ------------------------------------------------------------------------------------


@click.group("plan")
def plan() -> None:
    """Sign, submit, list, show and verify plans.

    \b
    Example:
      writ plan sign plan.json --key plan-bot.pem && writ plan submit plan.signed.json
    """


def _duration(value: Any) -> timedelta:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    m = re.fullmatch(r"(\d+)([smhd])", value) if isinstance(value, str) else None
    if not m or int(m.group(1)) == 0:
        raise InputError(f"expires_in {value!r} is not a duration: seconds, or a number with s, m, h or d (4h)",
                         code=reasons.PLAN_INVALID)
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


def plan_from_file(doc: Any, *, now: datetime) -> Plan:
    """A new plan from a hand-written plan file: created now, with a fresh nonce."""
    if not isinstance(doc, dict):
        raise InputError("a plan file is a JSON object with title, rationale, planner and steps", code=reasons.PLAN_INVALID)
    filled = sorted({"created_at", "nonce"} & set(doc))
    if filled:
        raise InputError(f"{', '.join(filled)} are filled in by `writ plan sign`; remove them from the file",
                         code=reasons.PLAN_INVALID)
    unknown = sorted(set(doc) - set(PLAN_FILE_FIELDS))
    if unknown:
        raise InputError(f"unknown plan file fields: {', '.join(unknown)} (expected {', '.join(PLAN_FILE_FIELDS)})",
                         code=reasons.PLAN_INVALID)
    created = now.astimezone(UTC).replace(microsecond=0)
    if "expires_at" in doc and "expires_in" in doc:
        raise InputError("give expires_at or expires_in, not both", code=reasons.PLAN_INVALID)
    if "expires_at" in doc:
        if not isinstance(doc["expires_at"], str):
            raise InputError("expires_at must be an ISO 8601 time string", code=reasons.PLAN_INVALID)
        expires = _parse_time(doc["expires_at"], "expires_at")
    else:
        expires = created + (_duration(doc["expires_in"]) if "expires_in" in doc else DEFAULT_EXPIRES_IN)
    try:
        return Plan.model_validate(
            {
                "title": doc.get("title"),
                "rationale": doc.get("rationale", ""),
                "planner": doc.get("planner"),
                "created_at": created,
                "expires_at": expires,
                "nonce": secrets.token_hex(16),
                "steps": doc.get("steps"),
                "ordered": doc.get("ordered", True),
            }
        )
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(plan)"
        raise InputError(f"not a valid plan: {loc}: {err['msg']}", code=reasons.PLAN_INVALID) from None


@plan.command("sign")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The planner's private key file.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Envelope to write (default: FILE with .signed.json).")
@writ_command
def plan_sign(file: Path, key_file: Path, output: Path | None) -> None:
    """Sign the plan in FILE with the planner's key: fills created_at and a nonce, writes a DSSE envelope.

    FILE is JSON: title, rationale, planner, steps [{server, tool, definition_digest,
    args}], and optionally ordered, expires_in ("4h", "30m", seconds; default 4h) or
    expires_at. Prints the plan id.

    \b
    Example:
      writ plan sign plan.json --key ~/.writ/keys/plan-bot-3f2a9c0d41be.pem -o plan.signed.json
    """
    limits = PlanLimits()
    doc = parse_strict(_read(file, "plan file", limits.max_plan_bytes), max_bytes=limits.max_plan_bytes,
                       max_depth=limits.max_json_depth)
    new_plan = plan_from_file(doc, now=datetime.now(UTC))
    new_plan.check_limits(limits)
    key = PrivateKey.load(key_file)
    envelope = sign_plan(new_plan, key)
    target = output if output is not None else file.with_name(file.name.removesuffix(".json") + ".signed.json")
    _write_new(target, envelope.to_json() + b"\n", "envelope")
    click.echo(new_plan.id)
    click.echo(f"signed by key {short_key_id(key.key_id)} as planner {new_plan.planner}; wrote {target}",
               err=True)


@plan.command("submit")
@click.argument("envelope_file", type=click.Path(path_type=Path, dir_okay=False))
@writ_command
def plan_submit(envelope_file: Path) -> None:
    """Submit a signed plan envelope: its planner signature is checked, then it waits for approvals.

    \b
    Example:
      writ plan submit plan.signed.json
    """
    limits = PlanLimits()
    # `writ plan sign` ends the file with a newline; the envelope is the bytes before it.
    raw = _read(envelope_file, "envelope", limits.max_envelope_bytes).rstrip(b"\n")
    with _open() as w:
        record = w.plans.submit(raw)
        status = w.plans.status(record.id)
    click.echo(f"plan {record.id} {record.state.value}: {safe(record.title)}")
    click.echo(_status_line(status.result))


@plan.command("list")
@click.option("--state", type=click.Choice([s.value for s in PlanState]), default=None, help="Only plans in this state.")
@writ_command
def plan_list(state: str | None) -> None:
    """List plans, oldest first.

    \b
    Example:
      writ plan list --state pending
    """
    with _open() as w:
        found = w.plans.list_plans(state)
    if not found:
        click.echo("no plans" + (f" in state {state}" if state else ""))
        return
    rows = [("PLAN", "STATE", "PLANNER", "EXPIRES", "TITLE")]
    rows += [(r.id[7:19], r.state.value, r.planner, _time(r.expires_at), safe(r.title)[:60]) for r in found]
    _table(rows)


@plan.command("show")
@click.argument("plan_ref", metavar="PLAN")
@click.option("--envelope", is_flag=True, help="Print the stored signed envelope (DSSE JSON), byte for byte.")
@writ_command
def plan_show(plan_ref: str, envelope: bool) -> None:
    """Show a plan (a full id or a unique prefix): every step in full, its state, its approvals.

    \b
    Example:
      writ plan show 3f2a9c
      writ plan show 3f2a9c --envelope > plan.signed.json
    """
    with _open() as w:
        record = w.plans.get(w.plans.resolve(plan_ref))
        if envelope:
            click.echo(record.envelope.rstrip(b"\n"))
            return
        now = datetime.now(UTC)
        approvals = w.plans.approvals(record.id)
        claims = {c.step_index: c for c in w.plans.claims(record.id)}
        problem, status = None, None
        try:
            status = w.plans.status(record.id, now=now)
        except WritError as e:
            problem = e
    shown = status.plan if status else record.unverified_plan()
    click.echo(f"plan      {record.id}")
    click.echo(f"title     {safe(shown.title)}")
    click.echo(f"state     {record.state.value}" + (f" (executor {record.executor})" if record.executor else ""))
    signature = f"FAILED: {problem.message}" if problem else "OK"
    click.echo(f"planner   {shown.planner} (signature {signature})")
    click.echo(f"created   {_time(shown.created_at)}   expires {_time(shown.expires_at)}")
    click.echo(f"ordered   {'yes' if shown.ordered else 'no'}")
    click.echo("rationale " + safe(shown.rationale, newlines=True).replace("\n", "\n          "))
    click.echo(f"steps     {len(shown.steps)}")
    for i, step in enumerate(shown.steps):
        click.echo(f"  [{i}] {safe(step.server)} / {safe(step.tool)}")
        click.echo(f"      definition {step.definition_digest}")
        args = json.dumps(step.args, indent=2, sort_keys=True, ensure_ascii=False)
        click.echo("      args " + safe(args, newlines=True).replace("\n", "\n      "))
        for c in step.constraints:
            fields = {k: v for k, v in c.model_dump(mode="json").items() if k not in ("kind", "arg")}
            click.echo(f"      constraint {c.kind} on {safe(c.arg)}: {safe(json.dumps(fields, ensure_ascii=False))}")
        claim = claims.get(i)
        if claim:
            ended = f", {claim.outcome} at {_time(claim.finished_at)}" if claim.outcome else ", running"
            click.echo(f"      claimed by {claim.executor} at {_time(claim.claimed_at)}{ended}")
    click.echo("approvals " + (_status_line(status.result) if status else "not counted (see above)"))
    _print_approvals(_approval_rows(approvals), status.result if status else None)


def _approval_rows(approvals: list[ApprovalRecord]) -> list[tuple[int, str, str, str, str, str]]:
    return [
        (i, a.approver, a.decision, short_key_id(a.key_id), _time(a.received_at), a.comment())
        for i, a in enumerate(approvals)
    ]


def _print_approvals(rows: list[tuple[int, str, str, str, str, str]], result: ApprovalResult | None) -> None:
    counted = {c.index for c in result.approvals + result.rejections} if result else set()
    ignored = {i.index: i for i in result.ignored} if result else {}
    for i, who, decision, key, at, comment in rows:
        verdict = "counted" if i in counted else (
            f"IGNORED {ignored[i].reason.value}: {ignored[i].detail}" if i in ignored else "not counted"
        )
        line = f"  #{i} {decision} by {who} (key {key}), received {at}: {verdict}"
        if comment:
            line += f'\n      "{safe(comment)}"'
        click.echo(line)


@plan.command("verify")
@click.argument("target", metavar="FILE|PLAN")
@click.option("--trust", "trust_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Verify against an exported trust root (writ trust export) instead of the trust store.")
@click.option("--at", "at", default=None, metavar="TIME",
              help="Verify as of TIME (ISO 8601; default now), e.g. when the plan began.")
@writ_command
def plan_verify(target: str, trust_file: Path | None, at: str | None) -> None:
    """Verify a plan envelope file or a stored plan, with its stored approvals; exit 1 naming what failed.

    Checks the planner's signature (which key, which principal), each approval
    (signature, key validity, eligibility), the count by the verifier and by the
    policy, and that the stored state is backed by them.

    \b
    Example:
      writ plan verify plan.signed.json
      writ plan verify 3f2a9c --trust trust-root.json --at 2026-11-22T10:00:00Z
    """
    now = _parse_time(at, "--at") if at else datetime.now(UTC)
    limits = PlanLimits()
    failures: list[str] = []
    path = Path(target)
    if not path.is_file() and ("/" in target or path.suffix):
        raise InputError(f"no envelope file {target} (and it is not a plan id)")
    with ExitStack() as stack:
        w: Services | None = None
        try:  # offline, with --trust and a file, there may be no data directory at all
            w = stack.enter_context(_open(create=trust_file is None or not path.is_file()))
        except StoreError:
            if trust_file is None or not path.is_file():
                raise
        if trust_file is not None:
            trust_set = load_trust_root(_read(trust_file, "trust root", limits.max_envelope_bytes))
        else:
            assert w is not None  # opening the store only fails quietly with --trust
            trust_set = w.trust.trust_set()
        record: PlanRecord | None = None
        if path.is_file():
            raw = _read(path, "envelope", limits.max_envelope_bytes).rstrip(b"\n")
            what = str(path)
        else:
            assert w is not None
            record = w.plans.get(w.plans.resolve(target))
            raw, what = record.envelope, f"stored plan {short_plan_id(record.id)}"
        try:
            verified = verify_plan_envelope(raw, trust_set, now=now, limits=limits)
        except WritError as e:
            click.echo(f"FAILED plan signature of {what}: {e.message}")
            sys.exit(1)
        if record is not None and verified.id != record.id:
            click.echo(f"FAILED {what}: its envelope holds plan {short_plan_id(verified.id)} (row changed outside Writ)")
            sys.exit(1)
        signer = _signer(raw, verified, trust_set)
        click.echo(f"plan {verified.id}: signature OK (planner {verified.planner}, key {short_key_id(signer)})")
        if record is None:
            try:
                if w is None:
                    raise NotFoundError("no plan store")
                record = w.plans.get(verified.id)
            except NotFoundError:
                click.echo("not in the plan store: no approvals to check")
                click.echo("VERIFIED")
                return
        assert w is not None
        stored = w.plans.approvals(record.id)
        a: Assessment = assess(w.policy, verified, [s.envelope for s in stored], trust_set, now=now, limits=limits)
    result = a.result
    _print_approvals(_approval_rows(stored), result)
    failures += [f"approval #{i.index}: {i.reason.value}: {i.detail}" for i in result.ignored]
    failures += [f"the verifier and the policy disagree: {d}" for d in a.disagreements]
    click.echo(f"state {record.state.value}; " + _status_line(result))
    counts_ok = (result.missing_approvals == 0 and not result.missing_groups and not result.rejected
                 and not result.violations and (result.expired or a.policy.satisfied))
    began = (PlanState.APPROVED, PlanState.EXECUTING, PlanState.COMPLETED, PlanState.FAILED)
    if record.state in began and not counts_ok:
        failures.append(f"state {record.state.value} is not backed by the approvals: {result.summary()}")
    if failures:
        click.echo(f"FAILED: {len(failures)} problem{'s' if len(failures) > 1 else ''}")
        for f in failures:
            click.echo(f"  - {f}")
        sys.exit(1)
    click.echo("VERIFIED")


def _signer(raw: bytes, verified: Plan, trust_set: TrustSet) -> str | None:
    env = dsse.Envelope.from_json(raw)
    keys = {kid: tk.public_key for kid, tk in trust_set.keys_for("planner", verified.planner).items()}
    return next(iter(dsse.accepted_keys(env, keys)), None)


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
    with _open() as w:
        plan_id = w.plans.resolve(plan_ref)
        before = w.plans.get(plan_id).state
        w.plans.finish(plan_id, "aborted", reason=reason.strip())
        ran = len(w.plans.claims(plan_id))
    click.echo(f"plan {short_plan_id(plan_id)} aborted (was {before.value}; {ran} step(s) had been claimed)")


# --- approve / reject ------------------------------------------------------------------------


def _decide(plan_ref: str, key_file: Path, comment: str, decision: Decision) -> None:
    key = PrivateKey.load(key_file)
    with _open() as w:
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
        result = w.plans.add_approval(plan_id, envelope.to_json())
        state = w.plans.get(plan_id).state
    verb = "approved" if decision == "approve" else "rejected"
    click.echo(f"{mine.principal} {verb} plan {short_plan_id(plan_id)} (now {state.value})")
    click.echo(_status_line(result))


@click.command("approve")
@click.argument("plan_ref", metavar="PLAN")
@click.option("--key", "key_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The approver's private key file.")
@click.option("--comment", default="", help="Why; stored in the signed approval.")
@writ_command
def approve(plan_ref: str, key_file: Path, comment: str) -> None:
    """Approve PLAN (a full id or a unique prefix): sign locally with your key, submit, show the count.

    \b
    Example:
      writ approve 3f2a9c --key ~/.writ-keys/alice.pem --comment "diff reviewed"
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
      writ reject 3f2a9c --key ~/.writ-keys/carol.pem --comment "touches prod config"
    """
    _decide(plan_ref, key_file, comment, "reject")
