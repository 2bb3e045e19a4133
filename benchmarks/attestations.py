"""Benchmark: the audit log's Merkle tree and signed checkpoints (issue 12).

    python benchmarks/attestations.py [--appends 2000] [--sizes 10000,1000000] [--database-url URL]

Prints one JSON document on stdout (progress on stderr):
- ``append``: entries per second through ``AuditLog.append`` (with the Merkle tree rows, as Writ
  writes them) with one writer and with four (processes, each with its own connection, on one
  fresh database), ``durable`` (the default: fsynced before it returns; SQLite ``synchronous=FULL``)
  and ``non_durable`` (``durable=False``, the gateway's reads: committed, fsynced within
  ``WRIT_AUDIT__FLUSH_S``; SQLite ``synchronous=NORMAL``), side by side in one run (ADR 0021).
- ``logs``: for each size, a log of that many entries (a valid chain and its tree, bulk-inserted
  as appends would have written them), then: the time of a signed checkpoint
  (``Checkpointer.checkpoint``: root from the stored tree, sign, store, append to the file and
  fsync), of the root alone, and the size and time of inclusion and consistency proofs (read from
  the database, and verified). ``verify_s``: ``AuditLog.verify`` against the checkpoints (every
  entry re-hashed), for sizes up to ``--verify-max``.

``goals`` says whether the run met issue 12's >= 5,000 appends/s, and with which writers and mode.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from writ.attestations.audit import GENESIS_HASH, AuditLog, compute_entry_hash
from writ.attestations.checkpoints import Checkpointer, read_checkpoint_file
from writ.attestations.merkle import CompactRange, verify_consistency, verify_inclusion
from writ.attestations.tree import entry_leaf
from writ.engine.core.db import Database, open_database
from writ.engine.core.settings import Settings
from writ.engine.core.timeutil import db_time, utc_now
from writ.plans.keys import PrivateKey

PAYLOAD = {"decision_id": "5f0c2d1e", "allow": True, "reasons": [], "policy_revision": "sha256:ab12"}


def _writer(url: str | None, home: str, n: int, durable: bool, go: Any, times: Any) -> None:
    with open_database(Settings(home=Path(home), database_url=url)) as store:
        log = AuditLog(store)
        go.wait()
        start = time.monotonic()  # system-wide clock: comparable between the writers
        for i in range(n):
            log.append("decision", {**PAYLOAD, "i": i}, durable=durable)
        times.put((start, time.monotonic()))  # the appends only, not the interpreter's exit


def appends_per_second(url: str | None, writers: int, total: int, durable: bool, where: Path | None = None) -> float:
    with tempfile.TemporaryDirectory(dir=where or Path.cwd()) as home:  # the project's disk unless told
        settings = Settings(home=Path(home), database_url=_fresh(url))
        with open_database(settings):
            pass  # migrated before the clock starts
        ctx = multiprocessing.get_context("spawn")
        go, times = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(settings.database_url, home, total // writers, durable, go, times))
                 for _ in range(writers)]
        for p in procs:
            p.start()
        time.sleep(2.0)  # every writer imported Writ and opened the database
        go.set()
        spans = [times.get() for _ in procs]
        for p in procs:
            p.join()
        return (total // writers * writers) / (max(e for _, e in spans) - min(s for s, _ in spans))


def _fresh(url: str | None) -> str | None:
    """A PostgreSQL URL with an empty schema of its own (dropped at exit is left to the caller); SQLite: None."""
    if url is None:
        return None
    import uuid

    import psycopg

    schema = f"writ_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def synthesize(store: Database, n: int) -> None:
    """A log of ``n`` valid entries and its tree, inserted in bulk: what ``n`` appends would have written."""
    created = db_time(utc_now())
    prev, compact, batch, nodes = GENESIS_HASH, CompactRange(), [], []
    with store.engine.begin() as conn:
        for seq in range(1, n + 1):
            payload = {**PAYLOAD, "i": seq}
            h = compute_entry_hash(seq, created, "decision", payload, prev)
            batch.append({"seq": seq, "c": created, "p": json.dumps(payload, separators=(",", ":"), sort_keys=True),
                          "prev": prev, "h": h})
            nodes += [{"l": level, "i": idx, "h": node} for level, idx, node in compact.push(entry_leaf(h))]
            prev = h
            if len(batch) == 20_000 or seq == n:
                conn.execute(text("INSERT INTO audit_log (seq, created_at, kind, payload, prev_hash, entry_hash) "
                                  "VALUES (:seq, :c, 'decision', :p, :prev, :h)"), batch)
                conn.execute(text("INSERT INTO audit_tree (level, idx, hash) VALUES (:l, :i, :h)"), nodes)
                batch, nodes = [], []
                print(f"  {seq} entries", file=sys.stderr, end="\r")
    print(file=sys.stderr)


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def us(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1_000_000, 1)


def one_log(url: str | None, n: int, verify_max: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as home:
        settings = Settings(home=Path(home), database_url=_fresh(url))
        with open_database(settings) as store:
            print(f"log of {n} entries ...", file=sys.stderr)
            start = time.perf_counter()
            synthesize(store, n)
            build_s = time.perf_counter() - start
            log = AuditLog(store)
            key = PrivateKey.generate()
            file = Path(home) / "checkpoints.log"
            checkpoints = Checkpointer(store, key, file=file)

            def grow_and_checkpoint() -> float:
                log.append("decision", PAYLOAD)
                start = time.perf_counter()
                checkpoints.checkpoint()
                return time.perf_counter() - start

            checkpoint = [grow_and_checkpoint() for _ in range(rounds)]
            size = log.tree.size()
            root = timed(lambda: log.tree.root(size), rounds)
            _, root_hash = log.tree.root(size)
            seqs = [random.randint(1, size) for _ in range(rounds)]  # noqa: S311 - benchmark sampling
            inclusion = [log.tree.inclusion_proof(s, size) for s in seqs]
            inclusion_gen = timed(lambda: log.tree.inclusion_proof(random.randint(1, size), size), rounds)  # noqa: S311
            leaves = {s: log.tree.leaves(s, s)[s] for s in seqs}
            inclusion_verify = [timed(lambda s=s, p=p: verify_inclusion(s - 1, size, leaves[s], p, root_hash), 1)[0]
                                for s, p in zip(seqs, inclusion, strict=True)]
            old = max(1, size // 2 + 1)
            consistency = log.tree.consistency_proof(old, size)
            old_root = log.tree.root(old)[1]
            consistency_gen = timed(lambda: log.tree.consistency_proof(old, size), rounds)
            consistency_verify = timed(lambda: verify_consistency(old, size, old_root, root_hash, consistency), rounds)
            result: dict[str, Any] = {
                "entries": size,
                "build_s": round(build_s, 1),
                "checkpoint_ms_p50": ms(checkpoint),
                "root_ms_p50": ms(root),
                "inclusion_proof": {"hashes_max": max(map(len, inclusion)), "bytes_max": 32 * max(map(len, inclusion)),
                                    "generate_us_p50": us(inclusion_gen), "verify_us_p50": us(inclusion_verify)},
                "consistency_proof": {"from": old, "hashes": len(consistency), "bytes": 32 * len(consistency),
                                      "generate_us_p50": us(consistency_gen), "verify_us_p50": us(consistency_verify)},
            }
            if size <= verify_max:
                print(f"verify {size} entries ...", file=sys.stderr)
                held = read_checkpoint_file(file, key.public_key)
                start = time.perf_counter()
                report = log.verify(checkpoints=held)
                result["verify_s"] = round(time.perf_counter() - start, 2)
                result["verify_ok"] = report.ok and report.checkpoints == len(held)
            return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=4000, help="appends per throughput measurement")
    parser.add_argument("--sizes", default="10000,1000000", help="log sizes for checkpoints and proofs")
    parser.add_argument("--verify-max", type=int, default=100_000, help="largest log to run a full verify on")
    parser.add_argument("--rounds", type=int, default=50, help="samples per timing")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (a fresh schema per run); SQLite if unset")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]

    append: dict[str, dict[str, float]] = {}
    for writers in (1, 4):
        name = f"{writers}_writer{'s' if writers > 1 else ''}"
        print(f"appends, {name}, durable and not ...", file=sys.stderr)
        rates: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(2):  # interleaved: both modes see the same machine load
            for durable in (True, False):
                rates[durable].append(appends_per_second(args.database_url, writers, args.appends, durable))
        append[name] = {"durable_per_s": round(max(rates[True])), "non_durable_per_s": round(max(rates[False]))}
    logs = [one_log(args.database_url, int(n), args.verify_max, args.rounds) for n in args.sizes.split(",")]

    print(json.dumps({
        "benchmark": "attestations",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "database": "postgresql" if args.database_url else "sqlite (WAL; durable: synchronous=FULL, "
                                                           "non-durable: NORMAL + WAL flush)",
        "append": append,
        "logs": logs,
        "goals": {"appends_per_s_5000": any(v >= 5000 for a in append.values() for v in a.values()),
                  "appends_per_s_5000_met_by": [f"{w}.{mode}" for w, a in append.items() for mode, v in a.items()
                                                if v >= 5000]},
    }, indent=2))


if __name__ == "__main__":
    main()
