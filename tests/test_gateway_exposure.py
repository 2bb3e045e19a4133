"""No upstream may be given a directory that holds Writ's data directory (keys, database)."""

from __future__ import annotations

from pathlib import Path

from writ.engine.gateway.config import GatewayConfig
from writ.engine.gateway.exposure import secrets_exposed


def config(**upstreams: dict) -> GatewayConfig:
    return GatewayConfig.model_validate({"upstreams": upstreams})


def test_filesystem_root_above_the_data_dir_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "project" / ".writ"
    home.mkdir(parents=True)
    cfg = config(fs={"command": "node", "args": ["server.js", str(tmp_path / "project")]})
    problems = secrets_exposed(cfg, [home])
    assert len(problems) == 1
    assert "upstream 'fs' can reach" in problems[0] and str(home) in problems[0]


def test_symlinked_root_is_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / ".writ").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    cfg = config(fs={"command": "node", "args": [str(link)]})
    assert secrets_exposed(cfg, [real / ".writ"])


def test_cwd_counts_as_a_root(tmp_path: Path) -> None:
    cfg = config(git={"command": "python", "args": ["-m", "mcp_server_git"], "cwd": str(tmp_path)})
    assert "as cwd" in secrets_exposed(cfg, [tmp_path / ".writ"])[0]


def test_sibling_directories_and_url_upstreams_are_fine(tmp_path: Path) -> None:
    cfg = config(
        fs={"command": "node", "args": ["server.js", str(tmp_path / "workspace")]},
        remote={"url": "http://127.0.0.1:9/mcp"},
    )
    assert secrets_exposed(cfg, [tmp_path / "writ-home", tmp_path / "workspace-other"]) == []
