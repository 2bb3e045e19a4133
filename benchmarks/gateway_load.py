"""Benchmark: throughput of the HTTP gateway under load, 32 concurrent agents calling a cheap read.

    PATH=.venv/bin:$PATH python benchmarks/gateway_load.py [--agents 32] [--calls 40] [--warmup 3]

Each agent is one MCP session of the official SDK client (``ClientSession`` over streamable
HTTP, an executor's bearer token) that calls ``everything__echo`` (``{"message": "ping"}``) as
fast as it gets answers, one call at a time; all agents run at once from one client process
and start together once every session is open and warmed up. Paths, each timed in turn:

| key | what the agents call |
|---|---|
| `direct` | the everything server's ``/mcp`` (the client's and the upstream's ceiling on this machine) |
| `one_process_sqlite` | one ``writ serve --config`` (SQLite audit log in its data directory) |
| `one_process_postgres` | one ``writ serve --config`` on PostgreSQL (a fresh schema) |
| `two_processes_postgres` | two ``writ serve --config`` on that PostgreSQL schema, half of the agents each |

Every Writ process decides each call with the embedded engine and writes the decision and
result entries to the audit log, as in ``gateway_overhead.py`` (same policy copy, same upstream
process). The processes use one Temporal dev server started for the run (``WRIT_TEMPORAL_ADDRESS``),
so no ``writ serve`` starts its own. PostgreSQL: ``WRIT_BENCH_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each run creates its own schema and drops it.
Without PostgreSQL the two PostgreSQL paths are reported as skipped.

Prints one JSON document on stdout: per path the calls, wall time, calls per second and the
per-call latency p50/p99 (microseconds); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
from gateway_overhead import (
    BIN,
    ECHO_ARGS,
    EVERYTHING_SERVER,
    HTTP_UPSTREAM,
    bench_policies,
    everything_server,
    free_ports,
    http_session,
    log,
    on_sigterm,
    percentile,
    tail,
    temporal,
    text_of,
    toml_str,
    writ_cli,
    writ_serve,
)

POSTGRES_URL = os.environ.get("WRIT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CALL_TIMEOUT_S = 60.0
PATHS = ("direct", "one_process_sqlite", "one_process_postgres", "two_processes_postgres")


async def run_agents(targets: list[tuple[str, str | None, str]], agents: int, calls: int, warmup: int
                     ) -> dict[str, Any]:
    """``agents`` sessions spread round robin over ``targets`` (url, token, tool), all calling at once.

    Returns the calls, the wall time from the common start to the last answer, calls per second and latency.
    """
    samples: list[float] = []
    errors: list[str] = []
    ready = 0
    all_ready, go = anyio.Event(), anyio.Event()

    async def agent(i: int) -> None:
        nonlocal ready
        url, token, tool = targets[i % len(targets)]
        async with http_session(url, token) as session:
            await session.initialize()
            for _ in range(warmup):
                await session.call_tool(tool, ECHO_ARGS, read_timeout_seconds=CALL_TIMEOUT_S)
            ready += 1
            if ready == agents:
                all_ready.set()
            await go.wait()
            for _ in range(calls):
                start = time.perf_counter()
                result = await session.call_tool(tool, ECHO_ARGS, read_timeout_seconds=CALL_TIMEOUT_S)
                samples.append((time.perf_counter() - start) * 1e6)
                if result.is_error or "Echo: ping" not in text_of(result):
                    errors.append(text_of(result)[:200])

    started = 0.0
    async with anyio.create_task_group() as tg:
        for i in range(agents):
            tg.start_soon(agent, i)
        await all_ready.wait()
        started = time.perf_counter()
        go.set()
    wall = time.perf_counter() - started
    return {"agents": agents, "processes": len({t[0] for t in targets}), "calls": len(samples),
            "errors": len(errors), "first_error": errors[0] if errors else None, "wall_s": round(wall, 2),
            "calls_per_s": round(len(samples) / wall, 1), "p50_us": round(statistics.median(samples)),
            "p99_us": round(percentile(samples, 0.99)), "mean_us": round(statistics.fmean(samples))}


def init_writ(home: Path, env: dict[str, str], database_url: str | None = None) -> None:
    extra = ["--database-url", database_url] if database_url else []
    writ_cli("init", "--data-dir", str(home), *extra, env=env)


def agent_token(home: Path, env: dict[str, str]) -> str:
    """An executor principal ``bench-bot`` in ``home``'s database, and a new token of it."""
    writ_cli("principals", "add", "bench-bot", "--role", "executor", "--data-dir", str(home), env=env)
    out = writ_cli("tokens", "new", "--principal", "bench-bot", "--data-dir", str(home), env=env)
    return out.strip().splitlines()[-1]


@contextmanager
def pg_schema() -> Iterator[str | None]:
    """A fresh schema on the benchmark's PostgreSQL (its URL with ``search_path`` set), dropped at the end;
    None when PostgreSQL cannot be reached."""
    try:
        import psycopg

        admin = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
        schema = f"writ_bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except Exception as e:  # noqa: BLE001 - reported, the PostgreSQL paths are skipped
        log(f"PostgreSQL at {POSTGRES_URL} is not usable ({type(e).__name__}: {e}); its paths are skipped")
        yield None
        return
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=32, help="concurrent agent sessions")
    parser.add_argument("--calls", type=int, default=40, help="timed calls per agent")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per agent first")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"which paths to time (default: all of {PATHS})")
    args = parser.parse_args()
    wanted = set(args.paths.split(","))
    if not wanted <= set(PATHS):
        parser.error(f"--paths: unknown {sorted(wanted - set(PATHS))}; choose from {PATHS}")
    if args.agents < 2 or args.calls < 1 or args.warmup < 0:
        parser.error("--agents must be at least 2, --calls at least 1 and --warmup at least 0")
    if not EVERYTHING_SERVER.exists():
        raise SystemExit(f"{EVERYTHING_SERVER} is missing: run `make test` (or npm ci --prefix .mcp-servers) first")
    signal.signal(signal.SIGTERM, on_sigterm)
    load_start = round(os.getloadavg()[0], 2)
    results: dict[str, Any] = {}
    tool = f"{HTTP_UPSTREAM}__echo"

    with tempfile.TemporaryDirectory(prefix="writ-load-") as d, ExitStack() as stack:
        tmp = Path(d)
        upstream_port, sqlite_port, pg_port, pg_port_b = free_ports(4)
        upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
        env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
               "WRIT_POLICY_DIR": str(bench_policies(tmp))}
        env.pop("WRIT_HOME", None)
        env.pop("WRIT_DATABASE_URL", None)
        env["WRIT_TEMPORAL_ADDRESS"] = stack.enter_context(temporal(tmp)).address
        config = tmp / "etc" / "writ.toml"  # not in a data dir
        config.parent.mkdir()
        config.write_text(f"[upstreams.{HTTP_UPSTREAM}]\nurl = {toml_str(upstream_url)}\n")
        stack.enter_context(everything_server(upstream_port, tmp))
        logs = [tmp / "everything.log"]

        def measure(key: str, targets: list[tuple[str, str | None, str]]) -> None:
            log(f"{key}: {args.agents} agents x {args.calls} calls ...")
            results[key] = anyio.run(run_agents, targets, args.agents, args.calls, args.warmup)
            log(f"  {results[key]['calls_per_s']} calls/s, p99 {results[key]['p99_us']} us")

        try:
            if "direct" in wanted:
                measure("direct", [(upstream_url, None, "echo")])
            if "one_process_sqlite" in wanted:
                home = tmp / "sqlite"
                init_writ(home, env)
                token = agent_token(home, env)
                logs.append(tmp / "serve-sqlite.log")
                with writ_serve(sqlite_port, config, home, env, logs[-1]):
                    measure("one_process_sqlite", [(f"http://127.0.0.1:{sqlite_port}/mcp", token, tool)])
            pg_paths = [p for p in PATHS if "postgres" in p and p in wanted]
            url = stack.enter_context(pg_schema()) if pg_paths else None
            if pg_paths and url is None:
                results.update({p: {"skipped": f"PostgreSQL at {POSTGRES_URL} is not usable"} for p in pg_paths})
            elif url is not None:
                homes = [tmp / "pg-a", tmp / "pg-b"]
                for h in homes:
                    init_writ(h, env, url)
                token = agent_token(homes[0], env)
                logs += [tmp / "serve-pg-a.log", tmp / "serve-pg-b.log"]
                with writ_serve(pg_port, config, homes[0], env, logs[-2]):
                    a = (f"http://127.0.0.1:{pg_port}/mcp", token, tool)
                    if "one_process_postgres" in wanted:
                        measure("one_process_postgres", [a])
                    if "two_processes_postgres" in wanted:
                        with writ_serve(pg_port_b, config, homes[1], env, logs[-1]):
                            measure("two_processes_postgres", [a, (f"http://127.0.0.1:{pg_port_b}/mcp", token, tool)])
        except BaseException:
            for path in logs:
                if text := tail(path):
                    log(f"--- {path.name} (last lines) ---\n{text}")
            raise

    print(json.dumps({
        "benchmark": "gateway_load",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "client": f"one process, {args.agents} SDK ClientSessions over streamable HTTP, one call at a time each, "
                  f"{args.warmup} untimed calls each first",
        "upstream": '@modelcontextprotocol/server-everything (streamableHttp, one process) echo {"message": "ping"}',
        "writ": "writ serve --config, embedded engine; decision + result audit entries per call; shipped policies "
                f"plus tools.json {HTTP_UPSTREAM}.echo = read",
        "paths": results,
    }, indent=2))


if __name__ == "__main__":
    sys.exit(main())
