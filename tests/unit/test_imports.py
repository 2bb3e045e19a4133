"""Every module imports, and the layers import one way only (ADR 0012).

The layer map, lowest first; a module may import its own layer and the ones below it:

    core  ->  plans  ->  attestations  ->  policy  ->  wiring  ->  workflows  ->  gateway  ->  web, demo  ->  cli

Any import of a higher layer, at module level or inside a function, fails this test.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import writ.attestations
import writ.engine
import writ.plans

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [writ.engine, writ.attestations, writ.plans]
MODULES = sorted(
    info.name for pkg in PACKAGES for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
    if ".migrations.versions." not in info.name and not info.name.endswith("migrations.env")
)

# Lowest first. Equal rank: peers that must not import each other.
LAYERS: list[tuple[int, str]] = [
    (0, "writ.engine.core"),
    (1, "writ.plans"),
    (2, "writ.attestations"),
    (3, "writ.engine.policy"),
    (4, "writ.engine.wiring"),
    (5, "writ.workflows"),
    (6, "writ.engine.gateway"),
    (7, "writ.engine.web"),
    (7, "writ.engine.demo"),
    (8, "writ.engine.cli"),
]
# Modules outside every layer: the package docstrings and the shipped policy data.
UNLAYERED = {"writ", "writ.engine", "writ.policies"}


def layer_of(module: str) -> tuple[int, str] | None:
    """The (rank, package) of ``module``, or None for a module outside the writ layers."""
    for rank, package in LAYERS:
        if module == package or module.startswith(package + "."):
            return rank, package
    return None


def writ_imports(path: Path) -> set[str]:
    """Every ``writ.*`` module that the file imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("writ"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("writ")}
    return found


def upward_imports(name: str, path: Path) -> list[str]:
    own = layer_of(name)
    assert own is not None, f"{name} is in no layer: add its package to LAYERS"
    bad = []
    for imported in sorted(writ_imports(path)):
        if imported in UNLAYERED:
            continue
        target = layer_of(imported)
        if target is None:
            continue  # `from writ.plans import models` lists writ.plans.models too; unknown names are submodules
        if target[0] > own[0] or (target[0] == own[0] and target[1] != own[1]):
            bad.append(f"{imported} ({target[1]})")
    return bad


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


@pytest.mark.parametrize("name", MODULES)
def test_no_module_imports_a_higher_layer(name: str) -> None:
    module = importlib.import_module(name)
    bad = upward_imports(name, Path(module.__file__))  # type: ignore[arg-type]
    assert not bad, f"{name} ({layer_of(name)}) imports a higher or a peer layer: {bad}"


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    """A plan module that imports the gateway is refused (the check itself can fail)."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from writ.engine.gateway.server import Gateway\n    return Gateway\n")
    assert upward_imports("writ.plans.models", src) == ["writ.engine.gateway.server (writ.engine.gateway)",
                                                        "writ.engine.gateway.server.Gateway (writ.engine.gateway)"]
    src.write_text("from writ.engine.demo import story\n")
    assert upward_imports("writ.engine.web.app", src) == ["writ.engine.demo (writ.engine.demo)",
                                                          "writ.engine.demo.story (writ.engine.demo)"]


def test_package_inits_have_no_side_effects() -> None:
    """Importing a package runs nothing: its ``__init__`` is a docstring (ADR 0001)."""
    for init in [*ROOT.glob("engine/**/__init__.py"), *ROOT.glob("plans/__init__.py"),
                 *ROOT.glob("attestations/__init__.py"), *ROOT.glob("workflows/**/__init__.py")]:
        if "migrations" in init.parts:
            continue
        body = ast.parse(init.read_text()).body
        code = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
                and not (isinstance(n, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in n.targets))]
        assert not code, f"{init.relative_to(ROOT)} runs code at import: line {code[0].lineno}"


def test_every_package_is_listed_in_pyproject() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for pkg in {m.rpartition(".")[0] for m in MODULES} | {p.__name__ for p in PACKAGES}:
        if pkg.count(".") >= 1:
            assert f'"{pkg}"' in text, f"{pkg} is not in pyproject.toml's packages"
