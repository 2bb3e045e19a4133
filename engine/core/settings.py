"""Writ's settings: where state lives, which engine decides, and every limit on untrusted input.

All settings come from ``WRIT_*`` environment variables (or keyword arguments),
with defaults that run on a laptop with nothing else installed:

    settings = Settings()                       # .writ/ under the cwd, embedded engine
    settings = Settings(home=Path("/srv/writ"), engine="opa", opa_url="http://127.0.0.1:8181")

The limits live here, in one object, so that every parser and every engine
bounds input the same way (see ``Limits``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class PlanLimits(BaseModel):
    """Bounds on signed plans and approvals from outside. Exceeding one is an ``InputError``, never a crash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_plan_bytes: int = Field(1_048_576, gt=0, description="Largest plan payload, in canonical JSON bytes.")
    max_envelope_bytes: int = Field(2_097_152, gt=0, description="Largest envelope JSON (plan or approval).")
    max_steps: int = Field(256, gt=0, description="Most steps in one plan.")
    max_args_bytes: int = Field(
        262_144,
        gt=0,
        description="Largest arguments of one step (plan or call), in canonical JSON bytes.",
    )
    max_signatures: int = Field(16, gt=0, description="Most signatures on one envelope.")
    max_approvals: int = Field(64, gt=0, description="Most approval envelopes evaluated for one plan.")
    max_json_depth: int = Field(32, gt=0, description="Deepest nesting of arrays and objects in a signed payload.")


class Limits(BaseModel):
    """Bounds on anything that comes from outside Writ. Exceeding one is a typed error, never a crash."""

    max_input_bytes: int = Field(1_048_576, gt=0, description="Largest policy input document, in bytes of JSON.")
    max_json_depth: int = Field(64, gt=0, description="Deepest nesting of arrays and objects in any JSON input.")
    engine_timeout_s: float = Field(0.5, gt=0, description="Time an OPA sidecar has to answer one decision.")
    policy_reload_interval_s: float = Field(
        2.0, ge=0, description="How often the embedded engine looks for changed policy files (0: every decision)."
    )
    plans: PlanLimits = Field(default_factory=PlanLimits, description="Bounds on signed plans and approvals.")


class Settings(BaseSettings):
    """Writ's configuration. Environment variables are ``WRIT_`` + the field name in capitals."""

    model_config = SettingsConfigDict(env_prefix="WRIT_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(Path(".writ"), description="Data directory: database, keys, Temporal state.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the database; SQLite in the data directory when unset."
    )
    policy_dir: Path | None = Field(
        None, description="Directory of .rego and data files; the policies shipped with Writ when unset."
    )
    engine: Literal["embedded", "opa"] = Field("embedded", description="Which policy engine decides.")
    opa_url: str = Field("http://127.0.0.1:8181", description="Base URL of the OPA sidecar (engine=opa).")
    limits: Limits = Field(default_factory=Limits)

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, v: Path) -> Path:
        return v.expanduser().absolute()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'writ.sqlite'}"

    @property
    def effective_policy_dir(self) -> Path:
        if self.policy_dir is not None:
            return self.policy_dir.expanduser().absolute()
        return shipped_policy_dir()


def shipped_policy_dir() -> Path:
    """The policies that ship with Writ (the repository's ``policies/``)."""
    from importlib.util import find_spec

    spec = find_spec("writ.policies")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the writ.policies package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))
