"""Benchmark: the same MCP client calling the same cheap read tool directly and through Writ.

    python benchmarks/gateway_overhead.py [--n 300] [--warmup 30]

Upstream: the filesystem server (npm, .mcp-servers/) on a temporary directory; tool:
``list_allowed_directories``. The "through Writ" path is ``writ mcp`` (stdio) with the
embedded policy engine and the SQLite audit log on: one decision, one audit entry for the
decision and one for the result, per call. Prints one JSON document on stdout with p50/p99
per path and the ratio; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FS_SERVER = ROOT / ".mcp-servers/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"


def node() -> str:
    venv_node = BIN / "node"
    return str(venv_node) if venv_node.exists() else "node"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(params: StdioServerParameters, tool: str, n: int, warmup: int) -> list[float]:
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        call: Callable[[], Awaitable[Any]] = lambda: session.call_tool(tool, {})  # noqa: E731
        for _ in range(warmup):
            result = await call()
            if result.is_error:
                raise SystemExit(f"{tool} failed: {result.content}")
        samples = []
        for i in range(n):
            start = time.perf_counter()
            await call()
            samples.append((time.perf_counter() - start) * 1e6)
            if (i + 1) % 100 == 0:
                print(f"  {i + 1}/{n}", file=sys.stderr)
        return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {"calls": len(samples), "p50_us": round(statistics.median(samples)),
            "p99_us": round(percentile(samples, 0.99)), "mean_us": round(statistics.fmean(samples))}


def setup_writ(tmp: Path, workspace: Path) -> tuple[Path, Path]:
    """A data dir with an executor principal, and a writ.toml with the fs upstream."""
    data = tmp / "writ-home"
    writ = str(BIN / "writ")
    env = {**os.environ, "WRIT_HOME": str(data)}
    subprocess.run([writ, "principals", "add", "bench-bot", "--role", "executor"], env=env, check=True,
                   capture_output=True)
    (tmp / "etc").mkdir()
    config = tmp / "etc" / "writ.toml"  # not beside the data dir: an upstream's cwd must not contain it
    config.write_text(
        f'[upstreams.fs]\ncommand = {json.dumps(node())}\nargs = [{json.dumps(str(FS_SERVER))}, '
        f'{json.dumps(str(workspace))}]\n'
    )
    return data, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="timed calls per path")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls first")
    args = parser.parse_args()
    if not FS_SERVER.exists():
        raise SystemExit(f"{FS_SERVER} is missing: run `make test` (or npm ci --prefix .mcp-servers) first")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        workspace = tmp / "workspace"
        workspace.mkdir()
        data, config = setup_writ(tmp, workspace)
        direct = StdioServerParameters(command=node(), args=[str(FS_SERVER), str(workspace)])
        gateway = StdioServerParameters(
            command=str(BIN / "writ"),
            args=["mcp", "--principal", "bench-bot", "--config", str(config), "--data-dir", str(data)],
            env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"},
        )
        print("direct to the filesystem server (stdio) ...", file=sys.stderr)
        d_samples = anyio.run(measure, direct, "list_allowed_directories", args.n, args.warmup)
        print("through writ mcp (stdio, policy + audit) ...", file=sys.stderr)
        g_samples = anyio.run(measure, gateway, "fs__list_allowed_directories", args.n, args.warmup)
    direct_s, gateway_s = summary(d_samples), summary(g_samples)
    print(json.dumps({
        "benchmark": "gateway_overhead",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "upstream": "@modelcontextprotocol/server-filesystem list_allowed_directories",
        "stdio": {
            "direct": direct_s,
            "through_writ": gateway_s,
            "p50_ratio": round(gateway_s["p50_us"] / direct_s["p50_us"], 2),
            "p50_added_us": gateway_s["p50_us"] - direct_s["p50_us"],
        },
        "http": "not measured yet: the gateway serves stdio only",
    }, indent=2))


if __name__ == "__main__":
    main()
