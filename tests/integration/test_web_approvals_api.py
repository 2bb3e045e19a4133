"""Schemathesis against the plans API (``/v1/plans``) of a logged-in approver: no input makes a server error.

The schema is the app's own OpenAPI document. Requests carry alice's session cookie, this
server's Origin and the CSRF token, so generated bodies reach the checks behind the door (a
malformed statement, an unknown plan, another approver's name), not only the login refusal.
Some generated requests are sent for the plan that exists, the rest for ids that do not.
A second run without a session checks that every refusal is still a 4xx in the one error shape.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from support.approvals import approval_world

from writ.engine.web.app import create_app
from writ.engine.web.invites import ENROL_PAYLOAD_TYPE, InviteStore, enrol_payload
from writ.engine.web.sessions import LOGIN_PAYLOAD_TYPE
from writ.plans.dsse import pae
from writ.plans.keys import PrivateKey

URL = "http://127.0.0.1:8420"


@dataclass
class LoggedIn:
    """The app, and the headers of alice's logged-in browser (session cookie, Origin, CSRF token)."""

    app: Any
    headers: dict[str, str]
    plan_id: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def logged_in(tmp_path: Path) -> Iterator[LoggedIn]:
    with approval_world(tmp_path, "writ-test-schemathesis") as world:
        record = world.submit("A plan alice may see")
        app = create_app(world.settings, services=world.services, store=world.services.store)
        http = TestClient(app, base_url=URL)
        http.get("/login")
        csrf = {"origin": URL, "x-csrf-token": http.cookies["writ_csrf"]}
        key = PrivateKey.generate()
        invite, token = InviteStore(world.services.store, world.services.trust, audit=world.services.audit).issue("alice")
        pub = key.public_key.to_base64()
        proof = key.sign(pae(ENROL_PAYLOAD_TYPE, enrol_payload(invite.id, "alice", URL, pub)))
        assert http.post(f"/enrol/{token}", json={"public_key": pub, "proof": _b64(proof)}, headers=csrf).is_success
        challenge = http.post("/login/challenge", json={"principal": "alice"}, headers=csrf).json()
        signature = key.sign(pae(LOGIN_PAYLOAD_TYPE, base64.b64decode(challenge["payload"])))
        assert http.post("/login", json={"challenge_id": challenge["challenge_id"], "key_id": key.key_id,
                                         "signature": _b64(signature)}, headers=csrf).is_success
        cookies = f"writ_session={http.cookies['writ_session']}; writ_csrf={http.cookies['writ_csrf']}"
        yield LoggedIn(app, {"cookie": cookies, "origin": URL, "x-csrf-token": http.cookies["writ_csrf"],
                             "host": "127.0.0.1:8420"}, record.id)


def operations(app: Any) -> list[Any]:
    """Every operation of ``/v1/plans`` in the app's OpenAPI schema."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex="^/v1/plans")
    found = [result.ok() for result in schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in found} == {
        "GET /v1/plans", "GET /v1/plans/{plan_id}", "GET /v1/plans/{plan_id}/envelope",
        "GET /v1/plans/{plan_id}/approvals", "POST /v1/plans/{plan_id}/approvals"}
    return found


def run_cases(operation: Any, examples: int, check: Any) -> None:
    """Hypothesis over the operation's generated requests (schemathesis's pytest plugin does not load on pytest 9)."""

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy())
    def each(case: Any) -> None:
        check(case)

    each()


def not_a_server_error_only(case: Any, response: Any) -> None:
    """Schemathesis's own check that the answer is not a 5xx."""
    case.validate_response(response, checks=[not_a_server_error])


def one_shape(response: Any) -> None:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body


def test_no_input_makes_a_server_error(logged_in: LoggedIn) -> None:
    def check(case: Any) -> None:
        if case.path_parameters and len(case.path_parameters["plan_id"]) % 2:  # about half of them on the real plan
            case.path_parameters["plan_id"] = logged_in.plan_id
        response = case.call(headers=logged_in.headers)
        not_a_server_error_only(case, response)
        if response.status_code >= 400:
            one_shape(response)

    for operation in operations(logged_in.app):
        run_cases(operation, 40, check)


def test_without_a_session_every_answer_is_a_refusal_in_one_shape(logged_in: LoggedIn) -> None:
    def check(case: Any) -> None:
        response = case.call(headers={"host": "127.0.0.1:8420", "origin": URL})
        not_a_server_error_only(case, response)
        assert response.status_code in (400, 401, 403, 404), response.text
        one_shape(response)

    for operation in operations(logged_in.app):
        run_cases(operation, 10, check)
