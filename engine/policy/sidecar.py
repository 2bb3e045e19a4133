"""The OPA sidecar engine: decisions from OPA's REST Data API, via ``opa-python-client``.

    engine = OpaSidecarEngine("http://127.0.0.1:8181", limits)
    decision = engine.decide(policy_input)    # POST /v1/data/writ/authz/decision?provenance=true

OPA must run the same policies (``writ policy bundle`` writes them as an OPA bundle).
The policy revision is read from OPA's provenance (the bundle manifest's ``revision``).
Fail closed: a refused connection, a timeout, an HTTP error and an undefined result
each become a deny with their own reason code. No retries: a decision is on the hot
path, and a slow retry is worse than a clear deny.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient

from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError, PolicyEvaluationError
from writ.engine.core.settings import Limits
from writ.engine.policy.base import PolicyEngine


class OpaSidecarEngine(PolicyEngine):
    """Decisions from an OPA server over its REST Data API; every transport failure is a typed deny.

        engine = OpaSidecarEngine("http://127.0.0.1:8181", Limits(engine_timeout_s=0.5))
        engine.decide(policy_input).reason_codes    # e.g. ['engine_unavailable'] when OPA is down
        engine.revision                             # the bundle revision OPA answered from
    """

    name = "opa"

    def __init__(self, url: str, limits: Limits | None = None) -> None:
        super().__init__(limits)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"OPA URL {url!r} is not an http(s) URL such as http://127.0.0.1:8181")
        self.url = url
        self._client = OpaClient(
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 80),
            ssl=parts.scheme == "https",
            timeout=self.limits.engine_timeout_s,
            retries=0,
        )
        self._revision: str | None = None

    @property
    def revision(self) -> str | None:
        """Revision of the bundle OPA answered the last decision from (None before the first)."""
        return self._revision

    def _evaluate(self, path: str, input_json: str) -> Any:
        package, _, rule = path.rpartition(".")
        try:
            body = self._client.query_rule(
                input_data=json.loads(input_json),
                package_path=package,
                rule_name=rule,
                query_params={"provenance": True},
            )
        except requests.Timeout:
            raise PolicyEvaluationError(
                f"OPA at {self.url} did not answer within {self.limits.engine_timeout_s}s",
                code=reasons.ENGINE_TIMEOUT,
            ) from None
        except requests.ConnectionError as e:
            raise PolicyEvaluationError(
                f"cannot reach OPA at {self.url}: {type(e).__name__}", code=reasons.ENGINE_UNAVAILABLE
            ) from None
        except requests.HTTPError as e:
            raise PolicyEvaluationError(_http_error_text(e), code=reasons.ENGINE_ERROR) from None
        except (requests.RequestException, ValueError) as e:
            raise PolicyEvaluationError(f"bad answer from OPA at {self.url}: {e}", code=reasons.ENGINE_ERROR) from None
        if not isinstance(body, dict):
            raise PolicyEvaluationError("OPA answered with a non-object body", code=reasons.ENGINE_ERROR)
        self._revision = _bundle_revision(body.get("provenance"))
        if "result" not in body:
            raise PolicyEvaluationError(f"data.{path} is undefined in OPA for this input", code=reasons.POLICY_UNDEFINED)
        return body["result"]

    def close(self) -> None:
        self._client.close_connection()


def _http_error_text(e: requests.HTTPError) -> str:
    resp = e.response
    status = resp.status_code if resp is not None else "?"
    detail = ""
    if resp is not None:
        try:
            err = resp.json()
            detail = f": {err.get('code', '')} {err.get('message', '')}".rstrip()
        except ValueError:
            detail = f": {resp.text[:200]}"
    return f"OPA answered HTTP {status}{detail}"


def _bundle_revision(provenance: Any) -> str | None:
    if not isinstance(provenance, dict):
        return None
    bundles = provenance.get("bundles")
    if not isinstance(bundles, dict):
        return None
    revisions = sorted(
        b["revision"] for b in bundles.values() if isinstance(b, dict) and isinstance(b.get("revision"), str)
    )
    return revisions[0] if len(revisions) == 1 else (",".join(revisions) or None)
