"""Every module imports, and the layers import one way (ADR 0001)."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import writ.attestations
import writ.engine
import writ.plans

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [writ.engine, writ.attestations, writ.plans]
MODULES = sorted(
    info.name for pkg in PACKAGES for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
    if ".migrations.versions." not in info.name and not info.name.endswith("migrations.env")
)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


TOP = {"writ.engine.cli", "writ.engine.cli_audit", "writ.engine.cli_common", "writ.engine.cli_demo", "writ.engine.cli_gateway",
       "writ.engine.cli_plans", "writ.engine.web"}


@pytest.mark.parametrize("name", MODULES)
def test_no_lower_layer_imports_the_web_app_or_the_cli(name: str) -> None:
    if name in TOP:
        return
    module = importlib.import_module(name)
    tree = ast.parse(Path(module.__file__).read_text())  # type: ignore[arg-type]
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not imported & TOP, f"{name} imports {imported & TOP}"


def test_every_package_is_listed_in_pyproject() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for pkg in {m.rpartition(".")[0] for m in MODULES} | {p.__name__ for p in PACKAGES}:
        if pkg.count(".") >= 1:
            assert f'"{pkg}"' in text, f"{pkg} is not in pyproject.toml's packages"
