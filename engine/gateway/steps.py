"""Which step of the bound plan a tool call is: the plan a session began, and the checks a call must pass.

    choice = choose_step(plan, claimed={0}, server="git", tool="git_commit", definition_digest=d, args=a)
    choice.index, choice.matches, choice.claimed, choice.reason     # 1, True, False, ''

Step choice (``choose_step``): an ordered plan's candidate is its next unclaimed step; an
unordered plan's is the first unclaimed step the call matches. A call that matches a step
that already ran is reported as that step with ``claimed=True``: policy sees it as the
step, and the plan store's claim refuses it (``step_already_claimed``), once and for all.
Path constraints are checked twice: lexically by ``writ.plans.matching`` and then on the
real path (symbolic links resolved), which must still be under the root and match the glob.
Each constrained root's real path is pinned when the plan begins (``pin_roots``, in
``BoundPlan.roots``); a call whose root no longer resolves to it is refused with
``path_root_changed`` (``check_roots``) before any step is chosen, so an approved ``docs/``
replaced by a symbolic link to ``secret/`` after approval leads nowhere.

    bound = BoundPlan(record.id, plan, pin_roots(plan))   # {"/srv/docs": "/srv/docs"}
    check_roots(bound, "fs", "write_file")               # PathRootChanged if /srv/docs moved since
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from writ.engine.core import reasons
from writ.engine.core.errors import InputError
from writ.engine.gateway.config import SEPARATOR
from writ.plans.matching import MATCH, MatchResult, matches
from writ.plans.models import PathGlob, Plan, PlanLimits, PlanStep, short_plan_id
from writ.plans.paths import PathRefused, glob_matches, under_root


@dataclass(frozen=True)
class BoundPlan:
    """The plan this session began, as verified when it began (the store re-verifies at each claim).

        bound = gateway.session.plan        # BoundPlan(id="sha256:...", plan=Plan(...), roots={...}), or None

    ``roots``: each ``path_glob`` root of its steps -> the real path it resolved to at begin.
    """

    id: str
    plan: Plan
    roots: Mapping[str, str]


class PathRootChanged(InputError):
    """A constrained root no longer resolves to the real path pinned when the plan began; the call is refused.

        check_roots(bound, "fs", "write_file")   # PathRootChanged: root '/srv/docs' of step 0 resolved to ...
    """

    code = reasons.PATH_ROOT_CHANGED


def pin_roots(plan: Plan) -> dict[str, str]:
    """Each ``path_glob`` root of the plan's steps -> its real path now (symbolic links resolved)."""
    return {c.root: os.path.realpath(c.root) for s in plan.steps for c in s.constraints if isinstance(c, PathGlob)}


def check_roots(bound: BoundPlan, server: str, tool: str) -> None:
    """``PathRootChanged`` if a root of a step calling ``server``/``tool`` resolves elsewhere than at begin."""
    for i, step in enumerate(bound.plan.steps):
        if step.server != server or step.tool != tool:
            continue
        for c in step.constraints:
            if not isinstance(c, PathGlob):
                continue
            pinned, now = bound.roots.get(c.root), os.path.realpath(c.root)
            if pinned != now:
                was = f"resolved to {pinned!r}" if pinned is not None else "was not pinned"
                raise PathRootChanged(
                    f"root {c.root!r} of step {i} {was} when plan {short_plan_id(bound.id)} began and now resolves "
                    f"to {now!r}: it was replaced (by a symbolic link?) after approval, so the call was not made. "
                    f"Ask the operator to put {c.root!r} back, or propose a new plan")


class SessionBinding:
    """The plan bound to one gateway session (``None`` until ``writ_plan_begin``), shared by its handlers.

        binding.plan = BoundPlan(record.id, plan, pin_roots(plan))     # writ_plan_begin
        binding.plan = None                           # writ_plan_finish
    """

    def __init__(self) -> None:
        self.plan: BoundPlan | None = None


@dataclass(frozen=True)
class StepChoice:
    """Which step of the bound plan a call is, if any.

        StepChoice(index=0, matches=False, reason="not step 0 of plan 3f2a..., the next to run: ...")
    """

    index: int | None
    matches: bool
    claimed: bool = False  # the call is a step that already ran: the claim will be refused
    reason: str = ""  # why the call is not the step (empty when it matches)


def real_path_check(c: PathGlob, value: Any, real_root: str | None = None) -> MatchResult:
    """The path as the upstream will open it (symbolic links resolved) must still be under the root and match.

    ``real_root``: the root's real path pinned when the plan began (resolved now when None).
    """
    if not isinstance(value, str):
        return MatchResult(False, f"argument {c.arg!r} must be a path string")
    if not os.path.isabs(value):
        return MatchResult(False, f"argument {c.arg!r}: {value!r} is relative; give an absolute path under "
                                  f"{c.root!r} (the upstream server, not Writ, would decide what it is relative to)")
    real = os.path.realpath(value)
    real_root = real_root if real_root is not None else os.path.realpath(c.root)
    try:
        rel = under_root(real, real_root)
    except PathRefused:
        return MatchResult(False, f"argument {c.arg!r}: {value!r} resolves to {real!r} (through a symbolic link), "
                                  f"which is outside the root {c.root!r}")
    if not glob_matches(c.glob, rel):
        return MatchResult(False, f"argument {c.arg!r}: {value!r} resolves to {real!r}, which does not match "
                                  f"{c.glob!r} under {c.root!r}")
    return MATCH


def step_match(step: PlanStep, *, server: str, tool: str, definition_digest: str | None, args: Mapping[str, Any],
               limits: PlanLimits | None = None, roots: Mapping[str, str] | None = None) -> MatchResult:
    """``writ.plans.matching.matches``, then the real-path check of every path constraint (``roots``: pinned)."""
    result = matches(step, server=server, tool=tool, definition_digest=definition_digest, args=args, limits=limits)
    if not result:
        return result
    for c in step.constraints:
        if isinstance(c, PathGlob):
            real = real_path_check(c, args[c.arg], (roots or {}).get(c.root))
            if not real:
                return real
    return MATCH


def is_candidate(plan: Plan, server: str, tool: str) -> bool:
    """Whether a call of this tool could be one of the plan's steps (then its definition is listed again first)."""
    return any(s.server == server and s.tool == tool for s in plan.steps)


def choose_step(plan: Plan, claimed: set[int], *, server: str, tool: str, definition_digest: str | None,
                args: Mapping[str, Any], limits: PlanLimits | None = None,
                roots: Mapping[str, str] | None = None) -> StepChoice:
    """The step of ``plan`` this call is (see the module docstring), or why it is none."""

    def match(i: int) -> MatchResult:
        return step_match(plan.steps[i], server=server, tool=tool, definition_digest=definition_digest, args=args,
                          limits=limits, roots=roots)

    unclaimed = [i for i in range(len(plan.steps)) if i not in claimed]
    candidates = unclaimed[:1] if plan.ordered else unclaimed
    results = {i: match(i) for i in candidates}
    hit = next((i for i, r in results.items() if r), None)
    if hit is not None:
        return StepChoice(hit, True)
    for i in sorted(claimed):
        if 0 <= i < len(plan.steps) and match(i):
            return StepChoice(i, True, claimed=True)
    return _no_step(plan, unclaimed, results, server, tool)


def _no_step(plan: Plan, unclaimed: list[int], results: Mapping[int, MatchResult], server: str,
             tool: str) -> StepChoice:
    """Why a call is none of the plan's steps, said for the agent (``results``: the candidates' checks)."""
    pid = short_plan_id(plan.id)
    if not unclaimed:
        return StepChoice(None, False, reason=f"every step of plan {pid} has run; this call is not one of them")
    if plan.ordered:
        first = unclaimed[0]
        return StepChoice(first, False, reason=f"not step {first} of plan {pid}, the next to run: "
                                               f"{results[first].reason}")
    same_tool = [i for i in unclaimed if plan.steps[i].server == server and plan.steps[i].tool == tool]
    if same_tool:
        i = same_tool[0]
        return StepChoice(None, False, reason=f"not step {i} of plan {pid} ({server}/{tool}): {results[i].reason}")
    left = ", ".join(f"{exposed_name(plan.steps[i])} (step {i})" for i in unclaimed)
    return StepChoice(None, False, reason=f"plan {pid} has no step calling {server}/{tool}; left to run: {left}")


def exposed_name(step: PlanStep) -> str:
    """The step's tool as agents call it: ``<server>__<tool>``."""
    return f"{step.server}{SEPARATOR}{step.tool}"
