"""Hand-written plan files for ``writ plan sign``, and what is checked before one is signed.

    plan = plan_from_file(json.loads(Path("plan.json").read_text()), now=utc_now())
    check_signer(w.trust, key, Path("plan-bot.pem"), plan, now=utc_now())   # the key is the planner's
    check_steps_in_data(plan, tools_data(w.policy))                          # without --config
    check_steps_upstream(plan, listing, Path("writ.toml"))                  # with --config

A plan file is JSON: title, rationale, planner, steps [{server, tool, definition_digest, args,
constraints}], and optionally ordered, expires_in ("4h", "30m", seconds; default 4h) or
expires_at. ``created_at`` and the nonce are filled in when it is signed. The checks refuse what
the gateway's ``writ_plan_propose`` refuses: a tool no upstream offers, one of Writ's own tools,
a step that only reads; and a key that is not a valid key of the plan's planner.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from writ.engine.core import reasons
from writ.engine.core.errors import InputError, NotFoundError, PermissionDenied, WritError
from writ.engine.core.timeutil import parse_iso
from writ.plans.keys import PrivateKey, short_key_id
from writ.plans.models import Plan, PlanStep

if TYPE_CHECKING:
    from writ.engine.cli.tools import Listing
    from writ.plans.trust_store import TrustStore

PLAN_FILE_FIELDS = ("title", "rationale", "planner", "steps", "ordered", "expires_in", "expires_at")
DEFAULT_EXPIRES_IN = timedelta(hours=4)
GOVERNANCE_SERVER = "writ"  # Writ's own tools: never a plan step


def _invalid(message: str) -> InputError:
    return InputError(message, code=reasons.PLAN_INVALID)


def _duration(value: Any) -> timedelta:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    m = re.fullmatch(r"(\d+)([smhd])", value) if isinstance(value, str) else None
    if not m or int(m.group(1)) == 0:
        raise _invalid(f"expires_in {value!r} is not a duration: seconds, or a number with s, m, h or d (4h)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


def _expiry(doc: dict[str, Any], created: datetime) -> datetime:
    if "expires_at" in doc and "expires_in" in doc:
        raise _invalid("give expires_at or expires_in, not both")
    if "expires_at" in doc:
        if not isinstance(doc["expires_at"], str):
            raise _invalid("expires_at must be an ISO 8601 time string")
        return parse_iso(doc["expires_at"], "expires_at")
    return created + (_duration(doc["expires_in"]) if "expires_in" in doc else DEFAULT_EXPIRES_IN)


def plan_from_file(doc: Any, *, now: datetime) -> Plan:
    """A new plan from a hand-written plan file: created now, with a fresh nonce."""
    if not isinstance(doc, dict):
        raise _invalid("a plan file is a JSON object with title, rationale, planner and steps")
    filled = sorted({"created_at", "nonce"} & set(doc))
    if filled:
        raise _invalid(f"{', '.join(filled)} are filled in by `writ plan sign`; remove them from the file")
    unknown = sorted(set(doc) - set(PLAN_FILE_FIELDS))
    if unknown:
        raise _invalid(f"unknown plan file fields: {', '.join(unknown)} (expected {', '.join(PLAN_FILE_FIELDS)})")
    created = now.astimezone(UTC).replace(microsecond=0)
    expires = _expiry(doc, created)
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
        raise _invalid(f"not a valid plan: {loc}: {err['msg']}") from None


def check_signer(trust: TrustStore, key: PrivateKey, key_file: Path, plan: Plan, *, now: datetime) -> None:
    """Refuse (``signing_key_untrusted``) a key that is not a valid trusted key of the plan's planner."""
    short = short_key_id(key.key_id)
    fix = f"sign with a key of {plan.planner!r} (see `writ keys list --principal {plan.planner}`)"
    try:
        record = trust.key(key.key_id)
    except NotFoundError:
        raise NotFoundError(f"key {short} in {key_file} is not in the trust store; {fix}",
                            code=reasons.SIGNING_KEY_UNTRUSTED) from None
    if record.principal != plan.planner:
        raise PermissionDenied(
            f"key {short} in {key_file} is a key of {record.principal!r} ({record.role}), but the plan's "
            f"planner is {plan.planner!r}; {fix}", code=reasons.SIGNING_KEY_UNTRUSTED)
    if record.role != "planner":
        raise PermissionDenied(
            f"{record.principal!r} is {'an' if record.role[0] in 'aeiou' else 'a'} {record.role}, not a planner: "
            "only a planner's key signs plans", code=reasons.SIGNING_KEY_UNTRUSTED)
    status = record.status(now)
    if status != "valid":
        raise PermissionDenied(f"key {short} of {record.principal!r} is {status}; {fix}",
                               code=reasons.SIGNING_KEY_UNTRUSTED)


def _named(step: PlanStep) -> str:
    return f"{step.server}__{step.tool}"


def _not_governance(i: int, step: PlanStep) -> None:
    if step.server == GOVERNANCE_SERVER:
        raise _invalid(f"step {i}: {_named(step)} is one of Writ's own tools; a plan's steps are upstream calls")


def _not_a_write(i: int, step: PlanStep, tool_class: str, where: str) -> InputError:
    return InputError(f"step {i}: {_named(step)} is a {tool_class} ({where}), and only writes need a plan: "
                      "list only the calls that change something", code=reasons.STEP_NOT_A_WRITE)


def check_steps_in_data(plan: Plan, data: Mapping[str, Any]) -> None:
    """Without a gateway config: each step's tool must be a write in the policy data (``data.writ.tools``)."""
    from writ.engine.cli.tools import listed_in_data

    for i, step in enumerate(plan.steps):
        _not_governance(i, step)
        tool_class = listed_in_data(data, step.server, step.tool)
        if tool_class is None:
            raise InputError(
                f"step {i}: {_named(step)} is not in the policy data (data.writ.tools); give --config writ.toml "
                "to check the step against the upstreams' own tools (see `writ tools list`)",
                code=reasons.TOOL_UNKNOWN)
        if tool_class != "write":
            raise _not_a_write(i, step, tool_class, "policy data")


def check_steps_upstream(plan: Plan, listing: Listing, config: Path) -> None:
    """With a gateway config: each step's tool is an upstream's, classed a write, with the digest it has now."""
    for i, step in enumerate(plan.steps):
        _not_governance(i, step)
        found = listing.tool(step.server, step.tool)
        if found is None and step.server in listing.problems:
            raise WritError(f"step {i}: cannot check {_named(step)}: {listing.problems[step.server]}",
                            code=reasons.UPSTREAM_UNAVAILABLE)
        if found is None:
            raise InputError(f"step {i}: no upstream of {config} offers {_named(step)} "
                             f"(see `writ tools list --config {config}`)", code=reasons.TOOL_UNKNOWN)
        if found.tool_class != "write":
            raise _not_a_write(i, step, found.tool_class, f"from {found.source}")
        if found.digest != step.definition_digest:
            raise InputError(
                f"step {i}: definition_digest {step.definition_digest} is not the digest of {_named(step)} "
                f"now, {found.digest} (see `writ tools list --config {config}`)", code=reasons.STEP_MISMATCH)
