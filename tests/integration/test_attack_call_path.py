"""Attacks on the gateway's call path (issue 9, findings 4, 9 and 10), each through real parts.

`writ mcp` subprocesses with the shipped policies, the embedded engine and a real audit log, in
front of the npm filesystem server on a temporary directory:

- a path-constrained plan step whose approved root is replaced by a symbolic link to another
  directory after the plan began (``path_root_changed``);
- lines on the stdio gateway's stdin that are not JSON it can read (nested 300 deep, a lone
  surrogate): a JSON-RPC parse error (-32700, id null), an audit entry, and the next message served,
  with stdin and stdout pipes (as MCP clients start it) and files (the SDK's reader);
- an upstream result larger than ``limits.max_result_bytes`` (set small with
  ``WRIT_LIMITS__MAX_RESULT_BYTES``): denied ``result_too_large``, only its size and the sha256 of
  what the upstream sent audited.
"""

from __future__ import annotations

import hashlib
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import mcp_types as types
import pytest
from support.gateway import (
    FS_SERVER,
    GatewayClient,
    audit_entries,
    error_code,
    gateway_client,
    reason_codes,
    register,
    require_upstreams,
    text_of,
    toml_list,
    toml_str,
)

from writ.engine.core.settings import Settings
from writ.engine.wiring.services import Services, open_services
from writ.plans.keys import PrivateKey
from writ.plans.statements import sign_approval

# Proposing a plan starts its approval workflow: these gateways need Temporal (the session's dev server).
pytestmark = pytest.mark.usefixtures("temporal_module")

PRINCIPALS = {"plan-bot": "planner", "exec-bot": "executor", "alice": "approver", "bob": "approver"}
MAX_RESULT_BYTES = 65_536  # every gateway of this module runs with this limit
REPLY_TIMEOUT_S = 20.0  # a malformed line must be answered well within this


class Env:
    def __init__(self, root: Path) -> None:
        node = require_upstreams()
        self.files = root / "files"  # the filesystem server's one allowed directory
        self.docs = self.files / "docs"  # the approved root of path-constrained steps
        self.secret = self.files / "secret"  # what an attacker wants written instead
        self.docs.mkdir(parents=True)
        self.secret.mkdir()
        (self.secret / "creds.md").write_text("the real credentials\n")
        self.big = self.files / "big.txt"
        self.big.write_text("0123456789abcdef\n" * 60_000)  # about 1 MB, far over MAX_RESULT_BYTES
        self.small = self.files / "small.txt"
        self.small.write_text("small\n")
        self.data_dir = root / "writ-home"
        self.stderr = root / "gateway.stderr"
        self.config = root / "etc" / "writ.toml"  # upstreams run in its directory, not above the data directory
        self.config.parent.mkdir()
        self.config.write_text(f"""
[gateway]
call_timeout_s = 30

[upstreams.fs]
command = {toml_str(node)}
args = {toml_list([str(FS_SERVER), str(self.files)])}
""")
        self.keys = register(self.data_dir, PRINCIPALS, keys=True)
        self.settings = Settings(home=self.data_dir)

    def argv(self, principal: str) -> list[str]:
        return ["-m", "writ.engine.cli.gateway", "--principal", principal, "--config", str(self.config),
                "--data-dir", str(self.data_dir), "-v"]

    @contextmanager
    def session(self, principal: str) -> Iterator[GatewayClient]:
        """`writ mcp` for ``principal`` with this module's limit, and the official SDK client's session to it."""
        with gateway_client(self.config, principal, self.data_dir, self.stderr,
                            env={"WRIT_LIMITS__MAX_RESULT_BYTES": str(MAX_RESULT_BYTES)}) as client:
            yield client


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return Env(tmp_path_factory.mktemp("attack-call-path"))


@pytest.fixture(scope="module")
def stores(env: Env) -> Iterator[Services]:
    with open_services(env.settings) as w:
        yield w


@pytest.fixture(scope="module")
def planner(env: Env) -> Iterator[GatewayClient]:
    with env.session("plan-bot") as client:
        yield client


def ok(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)[:300]
    return result.structured_content or {}


def entries_after(env: Env, seq: int) -> list[Any]:
    return [e for e in audit_entries(env.data_dir) if e.seq > seq]


def last_seq(env: Env) -> int:
    found = audit_entries(env.data_dir)
    return found[-1].seq if found else 0


# --- finding 4: a constrained root swapped after the plan began --------------------------------------


def test_constrained_root_swapped_for_symlink(env: Env, stores: Services, planner: GatewayClient) -> None:
    step = {"tool": "fs__write_file", "args": {"content": "# Docs\n"},
            "constraints": [{"kind": "path_glob", "arg": "path", "root": str(env.docs), "glob": "*.md"}]}
    plan_id = ok(planner.call("writ__writ_plan_propose", {"title": "A docs page", "rationale": "for the test",
                                                          "steps": [step]}))["plan_id"]
    for name in ("alice", "bob"):
        envelope = sign_approval(plan_id, PrivateKey.load(env.keys[name]), approver=name, comment="ok")
        stores.plans.add_approval(plan_id, envelope.to_json())
    assert stores.plans.get(plan_id).state.value == "approved"

    with env.session("exec-bot") as executor:
        begun = ok(executor.call("writ__writ_plan_begin", {"plan_id": plan_id}))
        pinned = str(env.docs.resolve())
        assert begun["roots"] == {str(env.docs): pinned}
        bound = [e.payload for e in audit_entries(env.data_dir)
                 if e.kind == "session_plan" and e.payload.get("plan_id") == plan_id and e.payload["event"] == "bound"]
        assert [b["roots"] for b in bound] == [{str(env.docs): pinned}]  # the pinned real path is evidence

        # The attack: the approved docs/ becomes a symbolic link to secret/, after approval and begin.
        env.docs.rename(env.files / "docs-approved")
        env.docs.symlink_to(env.secret, target_is_directory=True)
        seq = last_seq(env)
        result = executor.call("fs__write_file", {"path": str(env.docs / "creds.md"), "content": "# Docs\n"})

    assert result.is_error and reason_codes(result) == ["path_root_changed"], text_of(result)[:300]
    assert text_of(result).startswith("denied [path_root_changed]: ")
    assert f"root {str(env.docs)!r} of step 0 resolved to {pinned!r} when plan" in text_of(result)
    assert (env.secret / "creds.md").read_text() == "the real credentials\n"  # secret/ untouched
    assert sorted(p.name for p in env.secret.iterdir()) == ["creds.md"]
    after = entries_after(env, seq)
    denied = [e.payload for e in after if e.kind == "decision"]
    assert [[r["code"] for r in d["decision"]["reasons"]] for d in denied] == [["path_root_changed"]]
    assert not [e for e in after if e.kind in ("tool_result", "step_claim")]  # never claimed, never forwarded
    assert stores.plans.claims(plan_id) == []


# --- finding 9: malformed lines on the stdio gateway's stdin ---------------------------------------------


class RawGateway:
    """`writ mcp` spoken to in raw JSON-RPC lines, each reply awaited with a timeout (a hang fails the test)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, out: IO[bytes]) -> None:
        for line in out:
            self.lines.put(line)

    def send(self, line: str | bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line.encode() if isinstance(line, str) else line) + b"\n")
        self.proc.stdin.flush()

    def reply(self) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=REPLY_TIMEOUT_S)
        except queue.Empty:
            pytest.fail(f"no reply from the stdio gateway within {REPLY_TIMEOUT_S:g} s")
        return dict(json.loads(line))

    def request(self, request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(json.dumps(message))
        return self.reply()


@pytest.fixture(scope="module")
def raw(env: Env) -> Iterator[RawGateway]:
    with env.stderr.open("ab") as errlog:
        proc = subprocess.Popen([sys.executable, *env.argv("plan-bot")], cwd=env.config.parent,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog)
    gateway = RawGateway(proc)
    try:
        hello = gateway.request(1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                  "clientInfo": {"name": "raw", "version": "0"}})
        assert hello["id"] == 1 and "result" in hello, hello
        gateway.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        yield gateway
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def malformed_gets_parse_error(env: Env, raw: RawGateway, line: str, next_id: int) -> None:
    seq = last_seq(env)
    raw.send(line)
    reply = raw.reply()
    assert reply["jsonrpc"] == "2.0" and reply["id"] is None, reply
    assert reply["error"]["code"] == -32700 and reply["error"]["message"].startswith("Parse error"), reply
    assert reply["error"]["data"]["code"] == "message_not_json"
    # Still serving: the next request is answered.
    assert raw.request(next_id, "ping") == {"jsonrpc": "2.0", "id": next_id, "result": {}}
    refused = [e.payload for e in entries_after(env, seq) if e.kind == "message_refused"]
    assert len(refused) == 1, refused
    assert refused[0]["code"] == "message_not_json" and refused[0]["jsonrpc_code"] == -32700
    assert refused[0]["transport"] == "stdio" and refused[0]["principal"] == "plan-bot"
    assert refused[0]["message_sha256"] == "sha256:" + hashlib.sha256(line.encode()).hexdigest()


NESTED = '{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "fs__list_allowed_directories", ' \
         '"arguments": {"a": ' + "[" * 300 + "]" * 300 + "}}}"
SURROGATE = '{"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "fs__read_text_file", ' \
            '"arguments": {"path": "\\ud800"}}}'
assert "\\ud800" in SURROGATE  # the escape itself, as a client would send it


def test_stdio_nested_json_gets_parse_error(env: Env, raw: RawGateway) -> None:
    malformed_gets_parse_error(env, raw, NESTED, 8)


def test_stdio_lone_surrogate_gets_parse_error(env: Env, raw: RawGateway) -> None:
    malformed_gets_parse_error(env, raw, SURROGATE, 10)


def test_stdio_from_files_answers_nested_json_and_lone_surrogate(env: Env, tmp_path: Path) -> None:
    """``writ mcp < requests > replies``: stdin and stdout are files, not pipes.

    The gateway then reads through the SDK's own stdio server (``stdio_transport``'s other path):
    each malformed line is answered and audited there too.
    """
    requests, replies = tmp_path / "requests.jsonl", tmp_path / "replies.jsonl"
    requests.write_text("\n".join([
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "file", "version": "0"}}}),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        NESTED, SURROGATE,
    ]) + "\n")
    seq = last_seq(env)
    with requests.open("rb") as stdin, replies.open("wb") as stdout, env.stderr.open("ab") as errlog:
        subprocess.run([sys.executable, *env.argv("plan-bot")], cwd=env.config.parent, stdin=stdin, stdout=stdout,
                       stderr=errlog, timeout=60, check=False)
    answers = [json.loads(line) for line in replies.read_text().splitlines()]
    assert [a["id"] for a in answers if "result" in a] == [1], answers
    errors = [a for a in answers if "error" in a]
    assert [(e["id"], e["error"]["code"], e["error"]["data"]["code"]) for e in errors] == \
        [(None, -32700, "message_not_json")] * 2, answers
    refused = [e.payload for e in entries_after(env, seq) if e.kind == "message_refused"]
    assert [r["message_sha256"] for r in refused] == \
        ["sha256:" + hashlib.sha256(line.encode()).hexdigest() for line in (NESTED, SURROGATE)], refused
    assert {(r["code"], r["jsonrpc_code"], r["transport"], r["principal"]) for r in refused} == \
        {("message_not_json", -32700, "stdio", "plan-bot")}


def test_stdio_json_that_is_no_message_gets_invalid_request(env: Env, raw: RawGateway) -> None:
    seq = last_seq(env)
    raw.send('{"jsonrpc": "2.0", "id": 11}')  # JSON, but neither a request, a notification nor a response
    reply = raw.reply()
    assert reply["error"]["code"] == -32600 and reply["error"]["data"]["code"] == "message_invalid", reply
    assert reply["id"] == 11
    assert raw.request(12, "ping")["id"] == 12
    refused = [e.payload for e in entries_after(env, seq) if e.kind == "message_refused"]
    assert [(r["code"], r["jsonrpc_code"]) for r in refused] == [("message_invalid", -32600)]


# --- finding 10: an upstream result larger than the limit ----------------------------------------------


def test_upstream_result_too_large(env: Env, planner: GatewayClient) -> None:
    assert ok(planner.call("fs__read_text_file", {"path": str(env.small)}))  # a small read passes unchanged
    seq = last_seq(env)
    result = planner.call("fs__read_text_file", {"path": str(env.big)})
    assert result.is_error and error_code(result) == "result_too_large", text_of(result)[:300]
    text = text_of(result)
    assert text.startswith("denied [result_too_large]: ") and f"limits.max_result_bytes ({MAX_RESULT_BYTES})" in text
    assert "0123456789abcdef" not in text and not result.structured_content  # the agent never gets it
    records = [e.payload for e in entries_after(env, seq) if e.kind == "tool_result"]
    assert len(records) == 1, records
    record = records[0]
    assert record["outcome"] == "result_too_large" and record["tool"] == "read_text_file"
    assert record["result_bytes"] > MAX_RESULT_BYTES
    assert record["result_sha256"].startswith("sha256:") and len(record["result_sha256"]) == 71
    # ... and it is the digest of what was refused: the filesystem server's result, its compact JSON as received.
    big = env.big.read_text()
    refused = types.CallToolResult.model_validate({"content": [{"type": "text", "text": big}],
                                                   "structuredContent": {"content": big}})
    compact = refused.model_dump_json(by_alias=True, exclude_none=True)
    assert record["result_sha256"] == "sha256:" + hashlib.sha256(compact.encode()).hexdigest()
    assert "0123456789abcdef" not in json.dumps(record)
