"""Test helpers: policy sets written to temp dirs, and the OPA REST server serving them.

    with opa_sidecar(load_policy_set(policy_dir), tmp_path) as url:
        OpaSidecarEngine(url).decide(inp)
"""

from __future__ import annotations

import contextlib
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

from support.opa_rest_server import spawn
from writ.engine.policy.bundle import write_bundle
from writ.engine.policy.policyset import PolicySet

# Decisions the engines can produce on their own when no policy decision was made:
# a parity comparison in which either side shows one of these compared nothing.
FAIL_CLOSED_CODES = frozenset({
    "engine_error", "engine_timeout", "engine_unavailable", "policy_undefined",
    "policy_result_invalid", "policy_not_loaded",
})


def write_policies(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: text}`` under ``root`` (dedented) and return ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


@contextlib.contextmanager
def opa_sidecar(ps: PolicySet, workdir: Path, *, delay_ms: int = 0) -> Iterator[str]:
    """Bundle ``ps`` as ``writ policy bundle`` does, serve it with OPA's REST API, yield the URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    bundle = workdir / "writ-bundle.tar.gz"
    write_bundle(ps, bundle)
    with spawn(bundle, delay_ms=delay_ms) as server:
        yield server.url


def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
