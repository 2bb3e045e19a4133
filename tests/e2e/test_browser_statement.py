"""The browser signs the same approval statement as the CLI: the same canonical bytes, a signature Python verifies.

The page's script (engine/web/static/writ.js, served from 127.0.0.1 so WebCrypto is available)
builds the in-toto statement of ``writ.plans.statements`` and encodes it as RFC 8785 itself.
Named cases carry what JSON encoders disagree on (escapes, control characters, characters beyond
U+FFFF, U+2028); hypothesis adds comments of any text.
"""

from __future__ import annotations

import base64
import functools
import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

from writ.engine.web.context import STATIC
from writ.plans import dsse
from writ.plans.keys import PublicKey
from writ.plans.statements import IN_TOTO_PAYLOAD_TYPE, ApprovalStatement

PLAN_ID = "sha256:" + "3f2a9c0d41be" * 5 + "0123"
AT = datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)
PAGE = b'<!doctype html><html><body data-page="test"><script src="/writ.js"></script></body></html>'

CASES = {
    "plain": ("alice", "approve", "looks right"),
    "empty_comment": ("bob", "reject", ""),
    "quotes_and_backslashes": ("alice", "approve", 'say "no" \\ then \\"yes\\"'),
    "control_characters": ("alice", "reject", "".join(chr(c) for c in range(0x20)) + "\x7f"),
    "html_and_script": ("carol", "approve", "<script>alert('x')</script> & </pre>"),
    "line_and_paragraph_separators": ("alice", "approve", "one\u2028two\u2029three"),
    "accents_and_cjk": ("dave", "approve", "café 中文 ÄÖÜ"),
    "beyond_u_ffff": ("alice", "reject", "ship it 😀 𝄞"),
    "principal_punctuation": ("ops.team_1@example+x-y", "approve", "ok"),
}


class _Static(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(PAGE)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    """A page of 127.0.0.1 (a secure context) that loads the form's script, and nothing else."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Static, directory=str(STATIC)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = chromium.new_page()
            tab.goto(f"http://127.0.0.1:{server.server_port}/")
            tab.wait_for_function("() => window.writ !== undefined")
            yield tab
            chromium.close()
    finally:
        server.shutdown()


def browser_bytes(page: Any, approver: str, decision: str, comment: str) -> bytes:
    values = page.evaluate("""([id, who, decision, comment, at]) =>
        Array.from(writ.canonicalBytes(writ.approvalStatement(id, who, decision, comment, at)))""",
                           [PLAN_ID, approver, decision, comment, "2026-11-30T12:34:56Z"])
    return bytes(values)


def python_bytes(approver: str, decision: str, comment: str) -> bytes:
    return ApprovalStatement.for_plan(PLAN_ID, approver=approver, decision=decision,  # type: ignore[arg-type]
                                      comment=comment, at=AT).payload()


@pytest.mark.parametrize("case", sorted(CASES))
def test_browser_and_python_write_the_same_statement_bytes(page: Any, case: str) -> None:
    approver, decision, comment = CASES[case]
    assert browser_bytes(page, approver, decision, comment) == python_bytes(approver, decision, comment)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(comment=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_comment_gives_the_same_bytes(page: Any, comment: str) -> None:
    assert browser_bytes(page, "alice", "approve", comment) == python_bytes("alice", "approve", comment)


def test_a_lone_surrogate_is_refused_by_the_browser_as_by_python(page: Any) -> None:
    error = page.evaluate("""() => { try { writ.canonical('\\ud800'); return null; } catch (e) { return e.message; } }""")
    assert error == "text with a lone surrogate cannot be signed"


def test_the_browsers_signed_envelope_verifies_in_python(page: Any) -> None:
    """A non-extractable key signs the statement's DSSE PAE; Python's verifier accepts it, and the PAE is Python's."""
    approver, decision, comment = CASES["beyond_u_ffff"]
    signed = page.evaluate("""async ([id, who, decision, comment, at]) => {
        const pair = await crypto.subtle.generateKey({name: 'Ed25519'}, false, ['sign', 'verify']);
        const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
        const key = {privateKey: pair.privateKey, keyId: 'sha256:' + await writ.sha256hex(raw)};
        const payload = writ.canonicalBytes(writ.approvalStatement(id, who, decision, comment, at));
        return {publicKey: writ.b64(raw), pae: Array.from(writ.pae('application/vnd.in-toto+json', payload)),
                envelope: await writ.signEnvelope(key, 'application/vnd.in-toto+json', payload)};
    }""", [PLAN_ID, approver, decision, comment, "2026-11-30T12:34:56Z"])
    key = PublicKey.from_base64(signed["publicKey"])
    expected = python_bytes(approver, decision, comment)
    assert bytes(signed["pae"]) == dsse.pae(IN_TOTO_PAYLOAD_TYPE, expected)
    envelope = dsse.Envelope.from_json(signed["envelope"].encode())
    assert envelope.payload == expected and envelope.to_json() == signed["envelope"].encode()  # canonical JSON too
    assert dsse.verify(envelope, {key.key_id: key}, 1, payload_type=IN_TOTO_PAYLOAD_TYPE) == (key.key_id,)
    assert envelope.signatures[0].keyid == key.key_id
    statement = ApprovalStatement.from_payload(envelope.payload)
    assert (statement.plan_id, statement.predicate.approver, statement.predicate.at) == (PLAN_ID, approver, AT)
    assert base64.b64decode(signed["publicKey"]) == key.raw
