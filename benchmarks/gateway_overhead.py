"""Benchmark: the same MCP client calling the same cheap read tool directly, through a plain SDK proxy and through
Writ, on stdio and on streamable HTTP.

    PATH=.venv/bin:$PATH python benchmarks/gateway_overhead.py [--n 300] [--warmup 30] [--sequential]

Three columns per transport, each timed with the official ``mcp`` SDK client (``ClientSession``),
one call at a time. Every path has a session open; after ``--warmup`` untimed calls each, they are
called in rounds of one call per path, the order rotated each round (direct, proxy, Writ; proxy,
Writ, direct; ...), so that all three see the same machine load: other work on a shared machine
shifts all of them, not one. Each process is then idle while the others' calls run, as between an
agent's calls, which costs every path a little against back-to-back loops (``--sequential``: all
calls of one path, then the next path's):

- ``direct``: the upstream server itself.
- ``plain_proxy``: ``benchmarks/plain_proxy.py``, a pass-through proxy on the same SDK (the
  low-level ``Server``, one ``ClientSession`` to the upstream; tools/list and tools/call forwarded,
  no policy, no audit, no token): what any proxy built on this SDK costs.
- ``through_writ``: ``writ mcp`` (stdio) or ``writ serve --config`` (HTTP, an executor's bearer token).

- ``stdio``: the filesystem server (npm, .mcp-servers/) on a temporary directory, tool
  ``list_allowed_directories``; the proxy and ``writ mcp`` run that same server as their stdio upstream.
- ``http``: the reference "everything" server (npm, .mcp-servers/) in its ``streamableHttp``
  mode, tool ``echo`` (``{"message": "ping"}``), called directly at its ``/mcp``, and by the proxy
  and ``writ serve`` as a URL upstream: the very process the direct path calls, so the upstream, its
  transport and the tool are identical on all three paths. (The filesystem server speaks stdio only,
  so it cannot be the HTTP baseline.)

Policy: the shipped policies know the filesystem server (``fs``) but not the everything
server, whose tools would all be writes (denied to an executor without a plan). The script
copies ``policies/`` to a temporary directory, adds ``everything.echo = "read"`` to
``writ/tools.json`` (nothing else changes) and runs both gateways with ``WRIT_POLICY_DIR``
pointing at the copy, so both Writ paths decide on the same policy set. Both use the
embedded engine and the SQLite audit log in a temporary data directory: per call one
decision, one audit entry for the decision and one for the result, both committed before
the answer and, for this read, fsynced within ``WRIT_AUDIT__FLUSH_S`` (ADR 0021). ``writ serve`` uses a
Temporal dev server the script starts on a free port (``WRIT_TEMPORAL_ADDRESS``).

Prints one JSON document on stdout (p50/p99 per path; ``p50_ratio``: Writ over direct,
``plain_proxy_p50_ratio``: the proxy over direct, ``writ_over_plain_proxy``; the added p50;
``goals``: issue 13's, stdio <= 2x direct and no slower than the proxy, HTTP <= 1.5x direct; the
environment); progress goes to stderr. Every process started and the temporary directory are
removed on exit, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    AsyncExitStack,
    ExitStack,
    asynccontextmanager,
    contextmanager,
    suppress,
)
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from writ.workflows.approval.devserver import DevServer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).absolute().parent  # absolute: the writ processes run in other directories
NPM = ROOT / ".mcp-servers/node_modules/@modelcontextprotocol"
FS_SERVER = NPM / "server-filesystem/dist/index.js"
EVERYTHING_SERVER = NPM / "server-everything/dist/index.js"
PLAIN_PROXY = ROOT / "benchmarks" / "plain_proxy.py"
POLICIES = ROOT / "policies"  # what `writ` uses when WRIT_POLICY_DIR is unset (editable install)
HTTP_UPSTREAM = "everything"  # the upstream's name in writ.toml: tools exposed as everything__<tool>
ECHO_ARGS = {"message": "ping"}
START_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 30.0


def node() -> str:
    venv_node = BIN / "node"
    return str(venv_node) if venv_node.exists() else "node"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"calls": len(samples), "p50_us": round(statistics.median(samples)),
            "p99_us": round(percentile(samples, 0.99)), "mean_us": round(statistics.fmean(samples))}


def ratio(a: dict[str, float], b: dict[str, float]) -> float:
    return round(a["p50_us"] / b["p50_us"], 2)


def trio(direct: list[float], plain: list[float], writ: list[float], **about: Any) -> dict[str, Any]:
    """One transport's three columns, and the ratios the goals are stated in (p50 over p50)."""
    d, p, g = summary(direct), summary(plain), summary(writ)
    return {**about, "direct": d, "plain_proxy": p, "through_writ": g,
            "p50_ratio": ratio(g, d), "plain_proxy_p50_ratio": ratio(p, d), "writ_over_plain_proxy": ratio(g, p),
            "p50_added_us": g["p50_us"] - d["p50_us"], "plain_proxy_p50_added_us": p["p50_us"] - d["p50_us"]}


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


# --- timing a pair --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side of a pair: how to open its session, and the tool to call there."""

    session: AbstractAsyncContextManager[ClientSession]
    tool: str


@asynccontextmanager
async def stdio_session(params: StdioServerParameters, errlog: Path) -> AsyncIterator[ClientSession]:
    with errlog.open("a") as err:
        async with stdio_client(params, errlog=err) as (read, write), ClientSession(read, write) as session:
            yield session


@asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        yield session


async def time_sides(sides: list[Side], args: dict[str, Any], expect: str, n: int, warmup: int,
                     sequential: bool) -> tuple[list[list[float]], list[str]]:
    """Open every side's session, warm each up, then time ``n`` calls on each: round by round, each round
    calling every side once in a rotated order (so that all sides see the same machine load and none is
    always first), or with ``sequential`` all calls of one side, back to back, before the next side's.
    Every answer must succeed and contain ``expect``. Returns (microseconds per side, negotiated protocol
    version per side)."""
    async with AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(p.session) for p in sides]
        inits = [await s.initialize() for s in sessions]
        tools = [side.tool for side in sides]

        def check(side: int, result: types.CallToolResult) -> None:
            if result.is_error or expect not in text_of(result):
                raise RuntimeError(f"{tools[side]} did not answer as expected: {text_of(result)[:500]!r}")

        async def call(side: int) -> types.CallToolResult:
            return await sessions[side].call_tool(tools[side], args, read_timeout_seconds=CALL_TIMEOUT_S)

        for _ in range(warmup):
            for side in range(len(sides)):
                check(side, await call(side))
        samples: list[list[float]] = [[] for _ in sides]
        results: list[tuple[int, types.CallToolResult]] = []
        k = len(sides)
        if sequential:
            order = [side for side in range(k) for _ in range(n)]
        else:
            order = [(i + j) % k for i in range(n) for j in range(k)]
        for done, side in enumerate(order, 1):
            start = time.perf_counter()
            result = await call(side)
            samples[side].append((time.perf_counter() - start) * 1e6)
            results.append((side, result))
            if done % 300 == 0:
                log(f"  {done}/{k * n} calls")
        for side, result in results:  # checked after the clock, so the check costs no path anything
            check(side, result)
        return samples, [str(i.protocol_version) for i in inits]


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def background(name: str, command: list[str], port: int, logfile: Path, *, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running, once it listens on 127.0.0.1:port, until the block ends.

    It gets a process group of its own, and the whole group is stopped at the end (SIGTERM, then SIGKILL):
    the venv's ``node`` is a Python launcher whose child is the real Node process, which a plain
    ``terminate()`` of the launcher would leave running."""
    with logfile.open("ab") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    problem = f"{name} did not start (exit {proc.poll()}); its log:\n{tail(logfile)}"
                    raise RuntimeError(problem) from None
                time.sleep(0.1)
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGTERM to the process group led by ``proc`` (its pid is the group id), SIGKILL to what is left."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # the leader may be gone before its children
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def writ_cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([str(BIN / "writ"), *args], check=False, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"writ {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


# --- set-up --------------------------------------------------------------------------------------


def toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string for paths and URLs


def bench_policies(tmp: Path) -> Path:
    """A copy of the shipped policies whose tools.json also classifies the everything server's echo as a read."""
    target = tmp / "policies"
    shutil.copytree(POLICIES, target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    tools_file = target / "writ" / "tools.json"
    tools = json.loads(tools_file.read_text())
    tools["servers"][HTTP_UPSTREAM] = {
        "description": "@modelcontextprotocol/server-everything (npm): benchmark upstream (gateway_overhead.py)",
        "trust_annotations": False,
        "tools": {"echo": "read"},
    }
    tools_file.write_text(json.dumps(tools, indent=2) + "\n")
    return target


def setup_writ(tmp: Path, workspace: Path, upstream_url: str) -> tuple[Path, Path, Path, dict[str, str], str]:
    """A data dir with an executor principal and its token; writ.toml files (stdio: fs; HTTP: the everything
    server by URL) outside the data dir; the environment the writ commands run with.
    Returns (data dir, stdio config, HTTP config, env, token)."""
    data = tmp / "writ-home"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "WRIT_POLICY_DIR": str(bench_policies(tmp))}
    env.pop("WRIT_HOME", None)
    writ_cli("init", "--data-dir", str(data), env=env)
    writ_cli("principals", "add", "bench-bot", "--role", "executor", "--data-dir", str(data), env=env)
    token = writ_cli("tokens", "new", "--principal", "bench-bot", "--data-dir", str(data), env=env)
    token = token.strip().splitlines()[-1]
    etc = tmp / "etc"  # not beside the data dir: an upstream's roots must not contain it
    etc.mkdir()
    stdio_config = etc / "writ-stdio.toml"
    stdio_config.write_text(f"[upstreams.fs]\ncommand = {toml_str(node())}\n"
                            f"args = [{toml_str(FS_SERVER)}, {toml_str(workspace)}]\n")
    http_config = etc / "writ-http.toml"
    http_config.write_text(f"[upstreams.{HTTP_UPSTREAM}]\nurl = {toml_str(upstream_url)}\n")
    return data, stdio_config, http_config, env, token


PATHS = {
    "stdio": {
        "upstream": "@modelcontextprotocol/server-filesystem list_allowed_directories",
        "direct_path": "SDK client -> stdio -> filesystem server",
        "plain_proxy_path": "SDK client -> stdio -> plain_proxy.py -> stdio -> filesystem server",
        "writ_path": "SDK client -> stdio -> writ mcp -> stdio -> filesystem server",
    },
    "http": {
        "upstream": '@modelcontextprotocol/server-everything (streamableHttp) echo {"message": "ping"}',
        "direct_path": "SDK client -> streamable HTTP -> everything server /mcp",
        "plain_proxy_path": "SDK client -> streamable HTTP -> plain_proxy.py (uvicorn) /mcp -> streamable HTTP "
                            "-> the same everything server process",
        "writ_path": "SDK client -> streamable HTTP (bearer token) -> writ serve /mcp -> streamable HTTP "
                     "-> the same everything server process (URL upstream)",
    },
}


def about(transport: str, protocols: list[str]) -> dict[str, Any]:
    return {**PATHS[transport], "protocol": dict(zip(("direct", "plain_proxy", "through_writ"), protocols,
                                                     strict=True))}


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports on 127.0.0.1."""
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


@contextmanager
def temporal(tmp: Path) -> Iterator[DevServer]:
    """Temporal's dev server on a free port for the run: each ``writ serve`` uses it (WRIT_TEMPORAL_ADDRESS)
    instead of starting its own on the default port."""
    home = tmp / "temporal"
    home.mkdir()
    with DevServer(home, port=free_port()) as server:
        yield server


def everything_server(port: int, tmp: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return background("the everything server", [node(), str(EVERYTHING_SERVER), "streamableHttp"], port,
                      tmp / "everything.log", env={**os.environ, "PORT": str(port)})


def plain_http_proxy(port: int, upstream_url: str, tmp: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return background("the plain proxy", [sys.executable, str(PLAIN_PROXY), "http", "--port", str(port),
                                          "--upstream", upstream_url], port, tmp / "plain-http.log")


def writ_serve(port: int, config: Path, data: Path, env: dict[str, str], logfile: Path
               ) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return background("writ serve", [str(BIN / "writ"), "serve", "--port", str(port), "--config", str(config),
                                     "--data-dir", str(data)], port, logfile, env=env, cwd=config.parent)


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: processes and temp dir go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="timed calls per path")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls first, per path")
    parser.add_argument("--sequential", action="store_true",
                        help="time all direct calls, then all calls through Writ (default: alternate them)")
    args = parser.parse_args()
    if args.n < 1 or args.warmup < 0:
        parser.error("--n must be at least 1 and --warmup at least 0")
    for server in (FS_SERVER, EVERYTHING_SERVER):
        if not server.exists():
            raise SystemExit(f"{server} is missing: run `make test` (or npm ci --prefix .mcp-servers) first")
    signal.signal(signal.SIGTERM, on_sigterm)
    load_start = round(os.getloadavg()[0], 2)
    node_version = subprocess.run([node(), "--version"], capture_output=True, text=True, check=True).stdout.strip()

    with tempfile.TemporaryDirectory(prefix="writ-bench-") as d, ExitStack() as stack:
        tmp = Path(d)
        workspace = tmp / "workspace"
        workspace.mkdir()
        upstream_port, writ_port, proxy_port = free_ports(3)
        upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
        data, stdio_config, http_config, env, token = setup_writ(tmp, workspace, upstream_url)
        env["WRIT_TEMPORAL_ADDRESS"] = stack.enter_context(temporal(tmp)).address
        try:
            log("stdio: the filesystem server directly, through the plain SDK proxy and through writ mcp ...")
            fs = [node(), str(FS_SERVER), str(workspace)]
            gateway = StdioServerParameters(
                command=str(BIN / "writ"),
                args=["mcp", "--principal", "bench-bot", "--config", str(stdio_config), "--data-dir", str(data)],
                env=env, cwd=str(stdio_config.parent),
            )
            stdio_sides = [
                Side(stdio_session(StdioServerParameters(command=fs[0], args=fs[1:]), tmp / "fs-direct.log"),
                     "list_allowed_directories"),
                Side(stdio_session(StdioServerParameters(command=sys.executable, args=[str(PLAIN_PROXY), "stdio",
                                                                                         "--", *fs]),
                                   tmp / "plain-stdio.log"), "list_allowed_directories"),
                Side(stdio_session(gateway, tmp / "writ-mcp.log"), "fs__list_allowed_directories"),
            ]
            listed = str(workspace.resolve())  # what list_allowed_directories answers
            stdio_samples, stdio_proto = anyio.run(time_sides, stdio_sides, {}, listed, args.n, args.warmup,
                                                   args.sequential)

            # HTTP: one everything server process, called directly, behind the plain proxy and behind writ serve
            stack.enter_context(everything_server(upstream_port, tmp))
            stack.enter_context(plain_http_proxy(proxy_port, upstream_url, tmp))
            stack.enter_context(writ_serve(writ_port, http_config, data, env, tmp / "writ-serve.log"))
            log("http: the everything server directly, through the plain SDK proxy and through writ serve ...")
            http_sides = [
                Side(http_session(upstream_url, None), "echo"),
                Side(http_session(f"http://127.0.0.1:{proxy_port}/mcp", None), "echo"),
                Side(http_session(f"http://127.0.0.1:{writ_port}/mcp", token), f"{HTTP_UPSTREAM}__echo"),
            ]
            http_samples, http_proto = anyio.run(time_sides, http_sides, ECHO_ARGS, "Echo: ping", args.n,
                                                 args.warmup, args.sequential)
        except BaseException:
            for name in ("fs-direct.log", "plain-stdio.log", "writ-mcp.log", "everything.log", "plain-http.log",
                         "writ-serve.log"):
                if text := tail(tmp / name):
                    log(f"--- {name} (last lines) ---\n{text}")
            raise

    stdio = trio(*stdio_samples, **about("stdio", stdio_proto))
    http = trio(*http_samples, **about("http", http_proto))
    print(json.dumps({
        "benchmark": "gateway_overhead",
        "python": platform.python_version(),
        "node": node_version,
        "mcp_sdk": version("mcp"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "warmup": args.warmup,
        "order": "sequential (all calls of one path, then the next path's)" if args.sequential
        else "interleaved (rounds of one call per path, the order rotated each round)",
        "writ": "embedded engine; SQLite audit log (decision + result entries per call); shipped policies "
                f"plus tools.json {HTTP_UPSTREAM}.echo = read",
        "plain_proxy": "benchmarks/plain_proxy.py: the same mcp SDK, tools/list and tools/call forwarded; "
                       "no policy, no audit, no token",
        "stdio": stdio,
        "http": http,
        "goals": {
            "stdio_p50_ratio_at_most_2": stdio["p50_ratio"] <= 2.0,
            "stdio_no_slower_than_plain_proxy": stdio["through_writ"]["p50_us"] <= stdio["plain_proxy"]["p50_us"],
            "http_p50_ratio_at_most_1_5": http["p50_ratio"] <= 1.5,
        },
    }, indent=2))

if __name__ == "__main__":
    main()
