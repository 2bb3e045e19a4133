"""The ``writ`` command.

    writ serve                          # the decision API on 127.0.0.1:8420, embedded engine
    writ policy test policies/          # run the Rego unit tests
    writ policy eval --input call.json  # what would the policy decide?
    writ audit verify                   # walk the audit log's hash chain

Any ``WritError`` is printed as ``error[code]: message`` and exits 1; never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from writ.engine.cli import plans as cli_plans
from writ.engine.cli.audit import audit
from writ.engine.cli.common import writ_command
from writ.engine.cli.demo import demo
from writ.engine.cli.gateway import mcp
from writ.engine.core.settings import Settings

if TYPE_CHECKING:
    from writ.engine.core.db import Database
    from writ.engine.gateway.tokens import TokenStore


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="writ")
def main() -> None:
    """Writ: policy-as-code governance for AI agents' MCP tool calls.

    \b
    Example:
      writ policy test          # run the shipped policies' unit tests
      writ serve                # start the decision API on 127.0.0.1:8420
    """


# --- policy ----------------------------------------------------------------------------


@main.group()
def policy() -> None:
    """Test, evaluate, check and bundle Rego policies.

    \b
    Example:
      writ policy test policies/ && writ policy bundle -o bundle.tar.gz
    """


def _policy_dir(settings: Settings, directory: Path | None) -> Path:
    return directory.expanduser().absolute() if directory else settings.effective_policy_dir


@policy.command("test")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--run", "match", default=None, metavar="REGEX", help="Only tests whose package.name matches.")
@click.option("-v", "--verbose", is_flag=True, help="Also print failure details for passing runs.")
@writ_command
def policy_test(directory: Path | None, match: str | None, verbose: bool) -> None:
    """Run the test_* rules of the policies in DIRECTORY, like `opa test`.

    One line per test, then a summary; exits 1 if any test fails or errors.

    \b
    Example:
      writ policy test policies/ --run authz
    """
    from writ.engine.policy.regotest import run_tests

    settings: Settings = click.get_current_context().obj
    root = _policy_dir(settings, directory)
    results = run_tests(root, match=match)
    colors = {"PASS": "green", "FAIL": "red", "ERROR": "red"}
    for r in results:
        where = f"{r.test.file}:{r.test.line}"
        line = f"{click.style(r.outcome.ljust(5), fg=colors[r.outcome])} {r.test.package}.{r.test.name}  ({where})"
        if r.detail and (not r.passed or verbose):
            line += f"\n      {r.detail}"
        click.echo(line)
    failed = sum(1 for r in results if not r.passed)
    if not results:
        what = f"matching --run {match!r}" if match else "(rules named test_*)"
        click.echo(f"no policy tests {what} found under {root}", err=True)
        sys.exit(1)
    summary = f"{len(results) - failed}/{len(results)} policy tests passed"
    click.echo(click.style(summary, fg="red" if failed else "green", bold=True)
               + (f"; {failed} failed" if failed else ""))
    if failed:
        sys.exit(1)


@policy.command("eval")
@click.option("--input", "input_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="JSON input document ('-' for stdin).")
@click.option("--query", default=None, metavar="PATH",
              help="Document to evaluate, e.g. data.writ.approval.result (default: the authz decision).")
@click.option("--policy-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Policies to evaluate (default: $WRIT_POLICY_DIR, else the shipped ones).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@writ_command
def policy_eval(input_file: Path, query: str | None, policy_dir: Path | None, as_json: bool) -> None:
    """Evaluate the policies for one input: a dry run, not enforced and not logged.

    \b
    Example:
      writ policy eval --input examples/executor-write.json
      writ policy eval --input approvals.json --query data.writ.approval.result
    """
    from writ.engine.core.bounds import parse_json_bounded
    from writ.engine.core.errors import InputError
    from writ.engine.policy.pdp import make_engine

    settings: Settings = click.get_current_context().obj
    if policy_dir is not None:
        settings = settings.model_copy(update={"policy_dir": policy_dir})
    try:
        raw = sys.stdin.buffer.read() if str(input_file) == "-" else input_file.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read input file {input_file}: {e.strerror}") from None
    doc = parse_json_bounded(raw, settings.limits)
    engine = make_engine(settings)
    if query:
        path = query.removeprefix("data.")
        value = engine.evaluate(path, doc)
        click.echo(json.dumps(value, indent=2, sort_keys=True))
        return
    decision = engine.decide(doc)
    if as_json:
        click.echo(decision.model_dump_json(indent=2))
        return
    verdict = click.style("ALLOW", fg="green", bold=True) if decision.allow else click.style("DENY", fg="red", bold=True)
    click.echo(f"{verdict}  (engine {decision.engine}, policy {decision.policy_revision}, {decision.duration_us} µs)")
    for r in decision.reasons:
        click.echo(f"  reason      {r.code}: {r.message}")
    for o in decision.obligations:
        click.echo(f"  obligation  {o.code}" + (f": {o.message}" if o.message else ""))


@policy.command("check")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@writ_command
def policy_check(directory: Path | None) -> None:
    """Load-time check: parse errors and builtins the embedded engine lacks, with file and line.

    A policy set that fails this check is refused by `writ serve` as well.

    \b
    Example:
      writ policy check ~/security/policies
    """
    from writ.engine.policy.policyset import load_policy_set

    settings: Settings = click.get_current_context().obj
    root = _policy_dir(settings, directory)
    ps = load_policy_set(root, include_tests=True)
    click.echo(f"ok: {len(ps.modules)} modules, {len(ps.data_files)} data files, packages "
               f"{', '.join(ps.packages)}")
    click.echo(f"revision (without tests): {load_policy_set(root).revision}")


@policy.command("bundle")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Bundle file to write (.tar.gz).")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@writ_command
def policy_bundle(output: Path, directory: Path | None) -> None:
    """Write the policies as an OPA bundle (.manifest with the revision, data.json, .rego files).

    \b
    Example:
      writ policy bundle -o writ-bundle.tar.gz && opa run --server --bundle writ-bundle.tar.gz
    """
    from writ.engine.policy.bundle import write_bundle
    from writ.engine.policy.policyset import load_policy_set

    settings: Settings = click.get_current_context().obj
    ps = load_policy_set(_policy_dir(settings, directory))
    size = write_bundle(ps, output)
    click.echo(f"wrote {output} ({size} bytes): {len(ps.modules)} modules, revision {ps.revision}")


# --- serve -------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8420, show_default=True, type=int, help="Port to bind.")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also serve the MCP gateway at /mcp (streamable HTTP, bearer tokens: writ tokens new) "
                   "with this gateway config's upstreams.")
@writ_command
def serve(host: str, port: int, config_path: Path | None) -> None:
    """Run Writ: the decision API (and, for OPA sidecars, the policy bundle) over HTTP.

    With --config, also the MCP gateway at /mcp: agents authenticate with a bearer token
    (writ tokens new --principal NAME); each MCP session acts for its token's principal.

    \b
    Example:
      writ serve --port 8420
      curl -s localhost:8420/v1/decisions -d @examples/executor-write.json
      writ serve --config writ.toml      # MCP at http://127.0.0.1:8420/mcp
    """
    import uvicorn

    from writ.engine.web.app import create_app

    settings: Settings = click.get_current_context().obj
    if config_path is None:
        app = create_app(settings, host=host)
        routes = "POST /v1/decisions, GET /v1/policy, GET /v1/bundle"
        _announce(settings, host, port, routes)
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return

    from writ.attestations.audit import AuditLog
    from writ.engine.core.db import open_database
    from writ.engine.gateway.exposure import load_safe_config
    from writ.engine.gateway.http import HttpGateway
    from writ.engine.gateway.tokens import TokenStore
    from writ.engine.policy.pdp import DecisionPoint, make_engine
    from writ.engine.wiring.services import wire_services

    config = load_safe_config(config_path, settings)
    with open_database(settings) as store:
        audit_log = AuditLog(store)
        pdp = DecisionPoint(make_engine(settings), audit_log)
        try:
            stores = wire_services(settings, store, engine=pdp.engine, audit=audit_log)
            gateway = HttpGateway(pdp, config, stores, TokenStore(store), host=host)
            app = create_app(settings, host=host, pdp=pdp, gateway=gateway)
            _announce(settings, host, port, "POST /v1/decisions, GET /v1/policy, GET /v1/bundle, MCP at /mcp")
            uvicorn.run(app, host=host, port=port, log_level="warning")
        finally:
            pdp.close()


def _announce(settings: Settings, host: str, port: int, routes: str) -> None:
    click.echo(f"writ: data directory {settings.home}")
    click.echo(f"writ: policies {settings.effective_policy_dir} (engine {settings.engine})")
    click.echo(f"writ: listening on http://{host}:{port}  ({routes})")


# --- tokens ------------------------------------------------------------------------------


def _tokens() -> tuple[Database, TokenStore]:
    from writ.engine.core.db import open_database
    from writ.engine.gateway.tokens import TokenStore

    settings: Settings = click.get_current_context().obj
    store = open_database(settings)
    return store, TokenStore(store)


@click.group("tokens")
def tokens() -> None:
    """Issue, list and revoke the bearer tokens agents use for the gateway at /mcp of `writ serve`.

    \b
    Example:
      writ tokens new --principal plan-bot
      writ tokens revoke tok-3f2a9c0d41be
    """


@tokens.command("new")
@click.option("--principal", required=True, metavar="NAME", help="Who the token acts for (a principal of the trust store).")
@writ_command
def tokens_new(principal: str) -> None:
    """Issue a token for PRINCIPAL and print it once (stdout, alone): only its sha256 is kept.

    \b
    Example:
      writ tokens new --principal plan-bot > plan-bot.token
    """
    store, store_tokens = _tokens()
    with store:
        record, secret = store_tokens.issue(principal)
    click.echo(f"token {record.id} for {record.principal}; it is shown only now", err=True)
    click.echo(secret)


@tokens.command("list")
@writ_command
def tokens_list() -> None:
    """List tokens: id, principal, created, revoked (never the token itself).

    \b
    Example:
      writ tokens list
    """
    store, store_tokens = _tokens()
    with store:
        records = store_tokens.list()
    if not records:
        click.echo("no tokens (writ tokens new --principal NAME)")
    for r in records:
        state = f"revoked {r.revoked_at}" if r.revoked_at else "active"
        click.echo(f"{r.id}  {r.principal}  created {r.created_at}  {state}")


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@writ_command
def tokens_revoke(token_id: str) -> None:
    """Revoke token ID: from now on it is refused (401).

    \b
    Example:
      writ tokens revoke tok-3f2a9c0d41be
    """
    store, store_tokens = _tokens()
    with store:
        record = store_tokens.revoke(token_id)
    click.echo(f"revoked {record.id} ({record.principal})")


main.add_command(audit)
main.add_command(mcp)
main.add_command(tokens)
main.add_command(demo)
main.add_command(cli_plans.principals)
main.add_command(cli_plans.keys)
main.add_command(cli_plans.trust)
main.add_command(cli_plans.plan)
main.add_command(cli_plans.approve)
main.add_command(cli_plans.reject)
