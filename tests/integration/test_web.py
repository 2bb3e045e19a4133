"""The HTTP API of `writ serve`: decisions (an auditor's token), the policy, the bundle, health and readiness.

Readiness is checked against real failures: a policy directory made unloadable, the database
file removed, an OPA sidecar stopped. The attacks on the decision API are in
tests/integration/test_attack_decision_api.py.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support.factories import call_input
from support.opa import opa_sidecar, unused_port

from writ.engine.core.db import open_database
from writ.engine.core.settings import Limits, Settings
from writ.engine.gateway.tokens import TokenStore
from writ.engine.policy.policyset import load_policy_set
from writ.engine.web.app import create_app
from writ.engine.wiring.services import open_services


def auditor_token(settings: Settings, name: str = "audit-bot", role: str = "auditor") -> str:
    """A bearer token of a new principal ``name`` (an auditor unless ``role`` says otherwise)."""
    with open_services(settings, create=True) as w:
        w.trust.add_principal(name, role)
    with open_database(settings) as store:
        return TokenStore(store).issue(name)[1]


@pytest.fixture
def client(settings: Settings) -> TestClient:
    token = auditor_token(settings)
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8420",
                      headers={"Authorization": f"Bearer {token}"})


def test_decision_endpoint_allows_a_read_and_logs_it(client: TestClient) -> None:
    r = client.post("/v1/decisions", json=call_input(tool="git_status"))
    assert r.status_code == 200
    body = r.json()
    assert body["allow"] is True and body["engine"] == "embedded"
    assert body["policy_revision"] == client.get("/v1/policy").json()["revision"]
    pdp = client.app.state.pdp  # type: ignore[attr-defined]
    entry = pdp.audit.tail(1)[0]
    assert entry.kind == "api_decision" and entry.payload["decision"]["decision_id"] == body["decision_id"]
    assert entry.payload["caller"]["principal"] == "audit-bot" and entry.payload["caller"]["role"] == "auditor"


def test_decision_endpoint_denies_a_planner_write_with_reason(client: TestClient) -> None:
    body = client.post("/v1/decisions", json=call_input(role="planner", principal="p", tool="git_commit")).json()
    assert body["allow"] is False
    assert "planner_cannot_write" in [r["code"] for r in body["reasons"]]


def test_oversized_body_is_a_logged_deny_not_an_error(client: TestClient) -> None:
    r = client.post("/v1/decisions", content=b'{"x": "' + b"y" * 1_100_000 + b'"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert [x["code"] for x in r.json()["reasons"]] == ["input_too_large"]
    pdp = client.app.state.pdp  # type: ignore[attr-defined]
    entry = pdp.audit.tail(1)[0]
    assert entry.kind == "api_decision" and entry.payload["input"] is None


def test_foreign_host_header_is_refused(client: TestClient) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach the API."""
    r = client.post("/v1/decisions", json=call_input(), headers={"host": "evil.example"})
    assert r.status_code == 400


def test_bundle_is_served_with_revision_etag(client: TestClient) -> None:
    r = client.get("/v1/bundle")
    assert r.status_code == 200
    revision = client.get("/v1/policy").json()["revision"]
    assert r.headers["etag"] == f'"{revision}"'
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        manifest = json.load(tar.extractfile("/.manifest"))  # type: ignore[arg-type]
        assert manifest["revision"] == revision
        assert "/writ/authz.rego" in tar.getnames()
    assert client.get("/v1/bundle", headers={"if-none-match": r.headers["etag"]}).status_code == 304


def test_openapi_lists_the_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/decisions", "/v1/policy", "/v1/bundle", "/healthz", "/readyz"} <= set(paths)


def test_concurrent_requests_from_many_threads_all_decide_and_chain(client: TestClient) -> None:
    """regorus engines are bound to their thread: each worker thread must get its own, none may panic."""
    from concurrent.futures import ThreadPoolExecutor

    def ask(i: int) -> bool:
        tool = "git_status" if i % 2 else "git_commit"
        return bool(client.post("/v1/decisions", json=call_input(tool=tool)).json()["allow"])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, range(40)))
    assert results == [bool(i % 2) for i in range(40)]
    pdp = client.app.state.pdp  # type: ignore[attr-defined]
    report = pdp.audit.verify()
    assert report.ok and sum(e.kind == "api_decision" for e in pdp.audit.tail(1000)) == 40


# --- /healthz and /readyz: real failures -----------------------------------------------------------


def test_ready_when_the_engine_decides_and_the_database_takes_entries(client: TestClient) -> None:
    pdp = client.app.state.pdp  # type: ignore[attr-defined]
    before = pdp.audit.head()
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"
    assert r.json()["checks"]["policy_engine"]["ok"] and r.json()["checks"]["database"]["ok"]
    assert pdp.audit.head() == before  # the probe decision is not logged
    assert client.get("/healthz").json() == {"status": "ok"}


def test_not_ready_when_the_policy_directory_no_longer_loads(tmp_path: Path, policy_dir: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(policy_dir, policies)
    settings = Settings(home=tmp_path / "home", policy_dir=policies, limits=Limits(policy_reload_interval_s=0))
    client = TestClient(create_app(settings), base_url="http://127.0.0.1:8420")
    assert client.get("/readyz").status_code == 200
    (policies / "writ" / "authz.rego").write_text("package writ.authz\n\ndecision := {{{ broken\n")
    r = client.get("/readyz")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "not_ready"
    assert [x["code"] for x in r.json()["reasons"]] == ["policy_invalid"]
    assert client.get("/healthz").status_code == 200  # alive, not ready


def test_not_ready_when_the_database_file_is_removed(settings: Settings) -> None:
    client = TestClient(create_app(settings), base_url="http://127.0.0.1:8420")
    assert client.get("/readyz").status_code == 200
    for suffix in ("", "-wal", "-shm"):
        (settings.home / f"writ.sqlite{suffix}").unlink(missing_ok=True)
    r = client.get("/readyz")
    assert r.status_code == 503, r.text
    assert [x["code"] for x in r.json()["reasons"]] == ["store_unavailable"]
    assert r.json()["checks"]["database"]["ok"] is False


def test_not_ready_when_the_opa_sidecar_is_down(tmp_path: Path, policy_dir: Path) -> None:
    home = tmp_path / "home"
    with opa_sidecar(load_policy_set(policy_dir), tmp_path / "opa") as url:
        client = TestClient(create_app(Settings(home=home, engine="opa", opa_url=url)),
                            base_url="http://127.0.0.1:8420")
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        check = r.json()["checks"]["opa_sidecar"]
        assert check["ok"] is True and check["engine"] == "opa"
    r = client.get("/readyz")  # the sidecar stopped
    assert r.status_code == 503, r.text
    assert [x["code"] for x in r.json()["reasons"]] == ["engine_unavailable"]
    nowhere = TestClient(create_app(Settings(home=home, engine="opa", opa_url=f"http://127.0.0.1:{unused_port()}")),
                         base_url="http://127.0.0.1:8420")
    assert nowhere.get("/readyz").status_code == 503

