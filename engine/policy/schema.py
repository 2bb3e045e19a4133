"""JSON Schemas of the policy contract, generated from the pydantic models.

    python -m writ.engine.policy.schema schemas/      # rewrite schemas/*.json

``tests/test_schemas.py`` fails when the committed files drift from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from writ.engine.policy.models import Decision, PolicyInput, PolicyResult

SCHEMA_BASE = "https://writ.dev/schemas/"

# file name -> (model, mode): inputs are described as accepted, outputs as produced.
SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "policy-input.schema.json": (PolicyInput, "validation"),
    "policy-result.schema.json": (PolicyResult, "validation"),
    "decision.schema.json": (Decision, "serialization"),
}


def render() -> dict[str, str]:
    out = {}
    for name, (model, mode) in SCHEMAS.items():
        schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_BASE + name, **schema}
        out[name] = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(f"wrote {p}")
