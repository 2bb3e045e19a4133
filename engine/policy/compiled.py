"""The compiled form of a policy set: regorus's RVM bytecode for Writ's entry points.

    compiled = compile_policy_set(ps)              # never raises: what the compiler refuses is listed
    compiled.compiled, compiled.refused            # ('writ.authz.decision', ...), {path: why}
    vm = ThreadVm(compiled, ps)                    # one per thread: regorus objects are bound to theirs
    vm.run("writ.authz.decision", input_json)      # the value as JSON text, or None: ask the interpreter

The embedded engine evaluates each entry point it knows (``ENTRY_POINTS``) with the compiled
program and keeps the tree interpreter for everything else: an entry point the compiler
refuses, a document no entry point names, and any call whose compiled answer is not a plain
value (undefined, an error of the VM, a panic). The interpreter then decides the call, so
such a call gets exactly the interpreter's answer, at the interpreter's speed (ADR 0014).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import regorus

from writ.engine.policy.base import DECISION_PATH
from writ.engine.policy.policyset import PolicySet, regorus_error_text
from writ.plans.assessment import REQUIREMENT_PATH, RESULT_PATH, RETRY_PATH

__all__ = ["ENTRY_POINTS", "UNDEFINED_MARK", "CompiledPolicy", "ThreadVm", "compile_policy_set", "interpreted_only"]

ENTRY_POINTS: tuple[str, ...] = (DECISION_PATH, REQUIREMENT_PATH, RESULT_PATH, RETRY_PATH)
"""The documents Writ asks for on its hot paths: the call decision and the approval documents."""

UNDEFINED_MARK = '"<undefined>"'
"""How the RVM writes an undefined value; an answer holding it anywhere goes to the interpreter."""


@dataclass(frozen=True)
class CompiledPolicy:
    """One policy revision compiled: the program's bytes, the entry points in it, and those refused, with why.

        c = compile_policy_set(ps)
        c.mode("writ.authz.decision")      # 'compiled' or 'interpreted'
        c.report()                         # [{'entry_point': ..., 'mode': ..., 'why': ...}, ...]
    """

    revision: str
    program: bytes | None
    compiled: tuple[str, ...]
    refused: dict[str, str] = field(default_factory=dict)

    def mode(self, path: str) -> str:
        return "compiled" if path in self.compiled else "interpreted"

    def report(self) -> list[dict[str, str | None]]:
        """Each known entry point, how it runs, and why the compiler refused it (None when compiled)."""
        return [
            {"entry_point": f"data.{p}", "mode": self.mode(p), "why": self.refused.get(p)}
            for p in sorted(set(self.compiled) | set(self.refused))
        ]


def _compile(ps: PolicySet, data_json: str, paths: list[str]) -> Any:
    return regorus.Program.compile_from_modules(data_json, list(ps.modules.items()), [f"data.{p}" for p in paths])


def _refusal(e: BaseException) -> str:
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        raise e
    return regorus_error_text(e)


def compile_policy_set(ps: PolicySet, entry_points: tuple[str, ...] = ENTRY_POINTS) -> CompiledPolicy:
    """Compile ``ps`` for ``entry_points``: all at once, else each alone to learn which ones the compiler refuses."""
    data_json = json.dumps(ps.data)
    refused: dict[str, str] = {}
    ok = list(entry_points)
    try:
        program = _compile(ps, data_json, ok)
    except BaseException as e:  # noqa: BLE001 - a refusal (or a panic) only means: interpret these
        _refusal(e)
        ok = []
        for path in entry_points:
            try:
                _compile(ps, data_json, [path])
            except BaseException as one:  # noqa: BLE001 - as above
                refused[path] = _refusal(one)
            else:
                ok.append(path)
        program = None
        if ok:
            try:
                program = _compile(ps, data_json, ok)
            except BaseException as e2:  # noqa: BLE001 - as above
                why = _refusal(e2)
                refused.update(dict.fromkeys(ok, why))
                ok = []
    blob = program.serialize_binary() if program is not None else None
    return CompiledPolicy(revision=ps.revision, program=blob, compiled=tuple(ok), refused=refused)


def interpreted_only(ps: PolicySet) -> CompiledPolicy:
    """No compiled program: every entry point is left to the interpreter."""
    why = "compilation is switched off for this engine (compiled=False)"
    return CompiledPolicy(revision=ps.revision, program=None, compiled=(), refused=dict.fromkeys(ENTRY_POINTS, why))


class ThreadVm:
    """The compiled program loaded into one RVM, for the thread that built it (regorus objects are unsendable)."""

    def __init__(self, compiled: CompiledPolicy, ps: PolicySet) -> None:
        self.revision = compiled.revision
        self._entry = {p: f"data.{p}" for p in compiled.compiled}
        self._vm: Any = None
        if compiled.program is None or not self._entry:
            return
        program, stale = regorus.Program.deserialize_binary(compiled.program)
        if stale:  # a program from another regorus build: compile it again here
            program = _compile(ps, json.dumps(ps.data), list(self._entry))
        vm = regorus.Rvm()
        vm.load_program(program)
        vm.set_data_json(json.dumps(ps.data))
        self._vm = vm

    def run(self, path: str, input_json: str) -> str | None:
        """The value of ``data.<path>`` as JSON text, or None when the interpreter must answer.

        None for a path not compiled and for an undefined answer; the VM's own errors raise.
        """
        entry = self._entry.get(path)
        if entry is None or self._vm is None:
            return None
        self._vm.set_input_json(input_json)
        text: str = self._vm.execute_entry_point(entry)
        if UNDEFINED_MARK in text:
            return None
        return text
