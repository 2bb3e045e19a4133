"""A small server that speaks the part of OPA's REST API Writ uses, with real OPA semantics.

    python tests/support/opa_rest_server.py --bundle writ-bundle.tar.gz --port 0
    # stdout: listening on http://127.0.0.1:PORT

    with spawn(bundle_path) as server:           # the same, as a subprocess, from a test
        OpaSidecarEngine(server.url).decide(policy_input)

No OPA binary is available here, so decisions come from OPA's own Go engine loaded in
process (PyPI ``opa-golib-python-bindings``, OPA v1.20). The bundle is read with
``writ.engine.policy.bundle.read_bundle``, the way ``opa run --bundle`` reads it:
``/.manifest`` (its ``revision`` is reported in provenance), every ``data.json`` at
the data path of its directory, every ``.rego`` module at its path. A bundle OPA
cannot compile makes the server exit with status 1 and the compiler's message.

Endpoints, as OPA documents them (https://www.openpolicyagent.org/docs/rest-api):

- ``POST /v1/data/{path}`` with ``{"input": ...}``: 200 ``{"result": value}``, or 200 ``{}``
  when the document is undefined. ``?provenance`` (alone or ``=true``, any case) adds
  ``{"provenance": {"version": ..., "bundles": {"writ": {"revision": ...}}}}``, also
  when the result is undefined. A body that is not a JSON object: 400
  ``{"code": "invalid_parameter", ...}``. An evaluation error: 500
  ``{"code": "internal_error", ...}``.
- ``GET /health``: 200 ``{}``.

One difference from an ``opa run`` server: the bindings evaluate with strict builtin
errors, so a builtin error (``1/0``, a bad ``time.parse_rfc3339_ns`` argument) is a 500
here where OPA's default (non-strict) would make that expression undefined. Writ
denies either way; only the reason code differs (``engine_error`` here).

``--delay-ms N`` sleeps N ms before each answer: a hanging sidecar, for fault tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import opa_bindings

from writ.engine.policy.bundle import read_bundle

BUNDLE_NAME = "writ"
MAX_BODY_BYTES = 64 * 1024 * 1024


def opa_version() -> str:
    """The OPA version compiled into the bindings' Go library (its module path names it)."""
    lib = Path(opa_bindings.__file__).parent / "libopabridge.so"
    try:
        with lib.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            found = re.search(rb"open-policy-agent/opa@v(\d+\.\d+\.\d+)", m)
            return found.group(1).decode() if found else "unknown"  # read before the map closes
    except (OSError, ValueError):
        return "unknown"


class BundleLoadError(Exception):
    pass


class OpaBackend:
    """An OPA engine holding one bundle; one lock serializes every call into it."""

    def __init__(self, bundle: Path) -> None:
        files = read_bundle(bundle)
        try:
            manifest = json.loads(files.get(".manifest", b"{}"))
        except ValueError as e:
            raise BundleLoadError(f"{bundle}: /.manifest is not JSON: {e}") from None
        self.revision: str = str(manifest.get("revision", ""))
        self.version = opa_version()
        self.lock = threading.Lock()
        self.engine = opa_bindings.OpaEngine()
        self.engine.print_handler = lambda message, location: None  # OPA logs prints; we drop them
        try:
            for name, content in sorted(files.items()):
                parts = name.split("/")
                if parts[-1] == "data.json":
                    self.engine.add_data(json.loads(content), ".".join(parts[:-1]))
            for name, content in sorted(files.items()):
                if name.endswith(".rego"):
                    self.engine.add_policy(name, content.decode("utf-8"))
            # Compile now, as ``opa run`` does at start: a bad bundle fails here, not on a request.
            self.engine.eval_query("true")
        except (opa_bindings.OpaError, ValueError) as e:
            raise BundleLoadError(f"{bundle}: OPA refused the bundle: {e}") from None

    def evaluate(self, path: str, input_doc: Any, has_input: bool) -> tuple[bool, Any]:
        """(defined, value) of ``data.<path>``; OpaError on an evaluation error."""
        with self.lock:
            try:
                if path:
                    value = self.engine.eval_document(path, input_doc if has_input else None)
                else:
                    rows = self.engine.eval_query("x := data", input_doc if has_input else None)
                    if not rows:
                        return False, None
                    value = rows[0]["x"]
            except opa_bindings.OpaUndefinedError:
                return False, None
        return True, value


def _bool_param(query: dict[str, list[str]], name: str) -> bool:
    """OPA's getBoolParam: present without a value means true; otherwise any value 'true' (any case)."""
    values = query.get(name)
    if values is None:
        return False
    if values == [""]:
        return True
    return any(v.lower() == "true" for v in values)


def make_handler(backend: OpaBackend, delay_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as OPA's server and requests' sessions use
        disable_nagle_algorithm = True  # else Nagle + delayed ACK add ~40 ms to every answer
        wbufsize = -1  # buffered: headers and body leave in one segment (flushed per request)
        server_version = "opa-rest-server"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            if delay_s:
                time.sleep(delay_s)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _read_body(self) -> bytes | None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self.close_connection = True
                self._send(HTTPStatus.BAD_REQUEST, {"code": "invalid_parameter",
                                                    "message": "bad or too large Content-Length"})
                return None
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/health":
                self._send(HTTPStatus.OK, {})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"code": "not_found", "message": "404 page not found"})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            body = self._read_body()
            if body is None:
                return
            if not (url.path == "/v1/data" or url.path.startswith("/v1/data/")):
                self._send(HTTPStatus.NOT_FOUND, {"code": "not_found", "message": "404 page not found"})
                return
            segments = [unquote(s) for s in url.path[len("/v1/data"):].split("/") if s]
            query = parse_qs(url.query, keep_blank_values=True)

            # OPA: an empty body means no input; otherwise the body must be a JSON object,
            # and {"input": null} is the same as no input.
            input_doc: Any = None
            if body.strip():
                try:
                    request = json.loads(body)
                except ValueError as e:
                    self._send(HTTPStatus.BAD_REQUEST, {
                        "code": "invalid_parameter",
                        "message": f"body contains malformed input document: {e}"})
                    return
                if not isinstance(request, dict):
                    self._send(HTTPStatus.BAD_REQUEST, {
                        "code": "invalid_parameter",
                        "message": "body contains malformed input document: "
                                   f"expected an object, got {type(request).__name__}"})
                    return
                input_doc = request.get("input")

            try:
                defined, value = backend.evaluate(".".join(segments), input_doc, input_doc is not None)
            except opa_bindings.OpaError as e:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {
                    "code": "internal_error", "message": f"1 error occurred: {e.message}",
                    "errors": [{"code": e.code, "message": e.message}]})
                return
            response: dict[str, Any] = {}
            if _bool_param(query, "provenance"):
                response["provenance"] = {
                    "version": backend.version,
                    "bundles": {BUNDLE_NAME: {"revision": backend.revision}},
                }
            if defined:
                response["result"] = value
            self._send(HTTPStatus.OK, response)

    return Handler


def serve(bundle: Path, port: int, delay_ms: int, host: str = "127.0.0.1") -> None:
    try:
        backend = OpaBackend(bundle)
    except Exception as e:  # noqa: BLE001 - any load failure is fatal, with its message
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    server = ThreadingHTTPServer((host, port), make_handler(backend, delay_ms / 1000))
    server.daemon_threads = True
    print(f"listening on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --- for tests and benchmarks: the server as a subprocess --------------------------


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[str]


@contextlib.contextmanager
def spawn(bundle: Path, *, delay_ms: int = 0, start_timeout_s: float = 30.0) -> Iterator[RunningServer]:
    """Start this server on a free port in a subprocess; stop it on exit."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--bundle", str(bundle), "--port", "0"]
    if delay_ms:
        cmd += ["--delay-ms", str(delay_ms)]
    # stderr to a file, not a pipe: a pipe nobody reads could fill up and block the server.
    with tempfile.TemporaryFile(mode="w+") as err_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, text=True)
        try:
            line = _read_line(proc, start_timeout_s)
            m = re.fullmatch(r"listening on (http://\S+)\s*", line or "")
            if m is None:
                proc.kill()
                proc.wait(timeout=10)
                err_file.seek(0)
                raise RuntimeError(f"OPA REST server did not start (exit {proc.returncode}): "
                                   f"{line!r} {err_file.read().strip()}")
            yield RunningServer(url=m.group(1), process=proc)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _read_line(proc: subprocess.Popen[str], timeout_s: float) -> str | None:
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    return out[0] if out else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve an OPA bundle over OPA's REST Data API (real OPA semantics).")
    parser.add_argument("--bundle", type=Path, required=True, help="bundle .tar.gz (from `writ policy bundle`)")
    parser.add_argument("--port", type=int, default=8181, help="TCP port; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--delay-ms", type=int, default=0, help="sleep this long before every answer")
    args = parser.parse_args(argv)
    serve(args.bundle, args.port, args.delay_ms, args.host)


if __name__ == "__main__":
    main()
