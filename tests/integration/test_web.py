"""The HTTP decision API of `writ serve`."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from fastapi.testclient import TestClient
from support.factories import call_input

from writ.engine.core.settings import Settings
from writ.engine.web.app import create_app


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), base_url="http://127.0.0.1:8420")


def test_decision_endpoint_allows_a_read_and_logs_it(client: TestClient) -> None:
    r = client.post("/v1/decisions", json=call_input(tool="git_status"))
    assert r.status_code == 200
    body = r.json()
    assert body["allow"] is True and body["engine"] == "embedded"
    assert body["policy_revision"] == client.get("/v1/policy").json()["revision"]
    pdp = client.app.state.pdp  # type: ignore[attr-defined]
    assert pdp.audit.tail(1)[0].payload["decision"]["decision_id"] == body["decision_id"]


def test_decision_endpoint_denies_a_planner_write_with_reason(client: TestClient) -> None:
    body = client.post("/v1/decisions", json=call_input(role="planner", principal="p", tool="git_commit")).json()
    assert body["allow"] is False
    assert "planner_cannot_write" in [r["code"] for r in body["reasons"]]


def test_oversized_body_is_a_logged_deny_not_an_error(client: TestClient) -> None:
    r = client.post("/v1/decisions", content=b'{"x": "' + b"y" * 1_100_000 + b'"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert [x["code"] for x in r.json()["reasons"]] == ["input_too_large"]


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
    assert {"/v1/decisions", "/v1/policy", "/v1/bundle", "/healthz"} <= set(paths)


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
    assert report.ok and report.entries == 40
