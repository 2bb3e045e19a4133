"""schemas/ is generated from the models: any drift fails here (fix with `make schemas`)."""

from __future__ import annotations

import json
from pathlib import Path

from writ.engine.policy.schema import SCHEMAS, render

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schemas_match_the_models() -> None:
    rendered = render()
    for name, text in rendered.items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"schemas/{name} is missing: run `make schemas`"
        assert path.read_text() == text, f"schemas/{name} drifted from the models: run `make schemas`"
    extra = {p.name for p in SCHEMA_DIR.glob("*.schema.json")} - set(SCHEMAS)
    assert not extra, f"schemas without a model: {extra}"


def test_input_schema_accepts_a_real_input_and_refuses_unknown_fields() -> None:
    schema = json.loads((SCHEMA_DIR / "policy-input.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"principal", "role", "session", "tool", "now"}
    annotations = schema["$defs"]["ToolAnnotations"]["properties"]
    assert set(annotations) == {"readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"}
