"""``writ policy test|eval|check|bundle``: work on Rego policies, with or without a data directory.

    $ writ policy test policies/ --run authz
    $ writ policy eval --input examples/planner-write.json
    DENY  (engine embedded, policy 3f2a9c0d41be, 212 µs)
      reason      planner_cannot_write: ...
    $ writ policy check --json

Without a DIRECTORY these use the policy directory recorded by ``writ init`` in the data
directory (if there is one), else ``$WRIT_POLICY_DIR``, else the policies shipped with Writ.
None of them needs an initialised data directory, and none writes to one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import echo_json

if TYPE_CHECKING:
    from writ.engine.core.settings import Settings


def _settings() -> Settings:
    found: Settings = click.get_current_context().obj
    return found


def _policy_dir(directory: Path | None) -> Path:
    return directory.expanduser().absolute() if directory else _settings().effective_policy_dir


@click.group("policy")
def policy() -> None:
    """Test, evaluate, check and bundle Rego policies.

    \b
    Example:
      writ policy test policies/ && writ policy bundle -o bundle.tar.gz
    """


@policy.command("test")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--run", "match", default=None, metavar="REGEX", help="Only tests whose package.name matches.")
@click.option("-v", "--verbose", is_flag=True, help="Also print failure details for passing runs.")
@writ_command(store="optional")
def policy_test(directory: Path | None, match: str | None, verbose: bool) -> None:
    """Run the test_* rules of the policies in DIRECTORY, like `opa test`.

    One line per test, then a summary; exits 1 if any test fails or errors.

    \b
    Example:
      writ policy test policies/ --run authz
    """
    from writ.engine.policy.regotest import run_tests

    root = _policy_dir(directory)
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
              help="Try other policies than the data directory's (a dry run: nothing is enforced).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@writ_command(store="optional")
def policy_eval(input_file: Path, query: str | None, policy_dir: Path | None, as_json: bool) -> None:
    """Evaluate the policies for one input: a dry run, not enforced and not logged.

    \b
    Example:
      writ policy eval --input examples/planner-write.json
      writ policy eval --input examples/planner-read.json --query data.writ.authz.decision.allow
    """
    from writ.engine.core.bounds import parse_json_bounded
    from writ.engine.core.errors import InputError
    from writ.engine.policy.pdp import make_engine

    settings = _settings()
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
@click.option("--json", "as_json", is_flag=True, help="Print the modules, data files, packages and revision as JSON.")
@writ_command(store="optional")
def policy_check(directory: Path | None, as_json: bool) -> None:
    """Load-time check: parse errors and builtins the embedded engine lacks, with file and line.

    A policy set that fails this check is refused by `writ serve` as well. Also says which
    entry points the embedded engine runs compiled, and which on its interpreter (and why).

    \b
    Example:
      writ policy check policies/
      writ policy check --json
    """
    from writ.engine.policy.compiled import compile_policy_set
    from writ.engine.policy.policyset import load_policy_set

    root = _policy_dir(directory)
    ps = load_policy_set(root, include_tests=True)
    deciding = load_policy_set(root)
    entry_points = compile_policy_set(deciding).report()
    if as_json:
        echo_json({"policy_dir": str(root), "modules": sorted(ps.modules), "data_files": sorted(ps.data_files),
                   "packages": list(ps.packages), "revision": deciding.revision, "entry_points": entry_points})
        return
    click.echo(f"ok: {len(ps.modules)} modules, {len(ps.data_files)} data files, packages "
               f"{', '.join(ps.packages)}")
    click.echo(f"revision (without tests): {deciding.revision}")
    for e in entry_points:
        click.echo(f"{e['mode']:<12} {e['entry_point']}" + (f"  ({e['why']})" if e["why"] else ""))


@policy.command("bundle")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Bundle file to write (.tar.gz).")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@writ_command(store="optional")
def policy_bundle(output: Path, directory: Path | None) -> None:
    """Write the policies as an OPA bundle (.manifest with the revision, data.json, .rego files).

    \b
    Example:
      writ policy bundle -o writ-bundle.tar.gz && opa run --server --bundle writ-bundle.tar.gz
    """
    from writ.engine.policy.bundle import write_bundle
    from writ.engine.policy.policyset import load_policy_set

    ps = load_policy_set(_policy_dir(directory))
    size = write_bundle(ps, output)
    click.echo(f"wrote {output} ({size} bytes): {len(ps.modules)} modules, revision {ps.revision}")
