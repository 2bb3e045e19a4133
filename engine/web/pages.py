"""The approver's pages: plans waiting for them, all plans by state, one plan, and the decision form's answer.

    GET  /                          plans waiting for me (eligible, not decided yet); not logged in: to /login
    GET  /plans?state=pending       every plan the policy lets me see, filtered by state (all: every state)
    GET  /plans/{plan_id}           the plan in full, its count, its audit trail, the approve/reject form
    POST /plans/{plan_id}/decision  the form (csrf_token, decision, comment, envelope): the workflow's count

Every page checks the session first and the plan's visibility next; each refusal is a page
with its status and reason. GETs change nothing. The form's ``envelope`` is the in-toto
statement the page's script signed with this browser's key (``static/writ.js``).
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from writ.engine.core import reasons
from writ.engine.core.errors import WritError
from writ.engine.web.context import WebDep, current_viewer, refused_page, render
from writ.engine.web.decide import decide
from writ.engine.web.decisions import Refusal
from writ.engine.web.security import check_post, refusal_of
from writ.engine.web.views import plan_view, visible_plans, waiting
from writ.plans.lifecycle import PlanState

__all__ = ["STATES", "router"]

router = APIRouter(include_in_schema=False)
STATES = ("all", *(s.value for s in PlanState))
MAX_COMMENT = 2000


@router.get("/")
async def home(request: Request, web: WebDep) -> Response:
    viewer = await current_viewer(request, web)
    if isinstance(viewer, Refusal):
        if viewer.code == reasons.LOGIN_REQUIRED:
            return RedirectResponse("/login", status_code=303)
        return refused_page(request, web, viewer)
    plans = await run_in_threadpool(waiting, web.services, viewer)
    return render(request, web, "home.html", viewer=viewer, plans=plans)


@router.get("/plans")
async def plans_page(request: Request, web: WebDep, state: str = "pending") -> Response:
    viewer = await current_viewer(request, web)
    if isinstance(viewer, Refusal):
        return refused_page(request, web, viewer)
    if state not in STATES:
        return refused_page(request, web, refusal_of(reasons.INPUT_INVALID, f"state {state[:40]!r} is not one of "
                                                     f"{', '.join(STATES)}"), viewer)
    plans = await run_in_threadpool(visible_plans, web.services, viewer, None if state == "all" else state)
    return render(request, web, "plans.html", viewer=viewer, plans=plans, state=state, states=STATES)


async def _plan_page(request: Request, web: WebDep, plan_id: str, *, status: int = 200, **extra: object) -> Response:
    viewer = await current_viewer(request, web)
    if isinstance(viewer, Refusal):
        return refused_page(request, web, viewer)
    try:
        view = await run_in_threadpool(plan_view, web.services, viewer, plan_id)
    except WritError as e:
        return refused_page(request, web, refusal_of(e.code, e.message), viewer)
    context: dict[str, object] = {"count": None, "decided_now": None, **extra}
    return render(request, web, "plan.html", status=status, viewer=viewer, view=view, **context)


@router.get("/plans/{plan_id}")
async def plan_page(request: Request, web: WebDep, plan_id: str) -> Response:
    return await _plan_page(request, web, plan_id)


@router.post("/plans/{plan_id}/decision")
async def decision_form(request: Request, web: WebDep, plan_id: str, csrf_token: str = Form(""),
                        decision: str = Form(""), envelope: str = Form(""), comment: str = Form("")) -> Response:
    """The approve/reject form: CSRF and Origin, the session, then ``decide``; the plan page with the count."""
    refusal = check_post(request, csrf_token)
    if refusal is not None:
        return refused_page(request, web, refusal)
    viewer = await current_viewer(request, web)
    if isinstance(viewer, Refusal):
        return refused_page(request, web, viewer)
    if len(comment) > MAX_COMMENT:
        return refused_page(request, web, refusal_of(reasons.INPUT_TOO_LARGE, f"a comment has at most {MAX_COMMENT} "
                                                     "characters"), viewer)
    outcome = await decide(web, viewer, plan_id, envelope, decision)
    if outcome.refusal is not None:
        return refused_page(request, web, outcome.refusal, viewer)
    return await _plan_page(request, web, plan_id, count=outcome.count, decided_now=decision)
