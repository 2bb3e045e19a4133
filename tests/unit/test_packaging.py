"""Every folder of the package is a listed package, so an install ships it without a warning.

setuptools warns ("Package 'writ.engine.web.static' is absent from the `packages`
configuration") and may one day drop the files when a folder holding package data or code is
not listed in ``[tool.setuptools] packages``. That warning appeared for the shipped policy
folder (issue 8) and again for the approval form's templates; this test names the folder.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _config() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        setuptools: dict[str, object] = tomllib.load(f)["tool"]["setuptools"]
    return setuptools


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = _config()
    listed = set(config["packages"])  # type: ignore[call-overload]
    package_dir: dict[str, str] = config["package-dir"]  # type: ignore[assignment]
    expected = set()
    for name, folder in package_dir.items():
        for path in [ROOT / folder, *(ROOT / folder).rglob("*")]:
            if not path.is_dir() or path.name == "__pycache__":
                continue
            if not any(f.is_file() for f in path.iterdir()):
                continue
            relative = path.relative_to(ROOT / folder).parts
            expected.add(".".join([name, *relative]))
    assert sorted(expected - listed) == [], "folders setuptools would warn about; add them to [tool.setuptools] packages"
    assert sorted(listed - expected) == [], "listed packages with no folder"


def test_package_data_names_files_that_exist() -> None:
    config = _config()
    package_dir: dict[str, str] = config["package-dir"]  # type: ignore[assignment]
    data: dict[str, list[str]] = config["package-data"]  # type: ignore[assignment]
    for package, patterns in data.items():
        top = next(n for n in sorted(package_dir, key=len, reverse=True) if package == n or package.startswith(n + "."))
        folder = ROOT / package_dir[top] / Path(*package[len(top) + 1:].split(".") if package != top else ())
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches no file in {folder}"
