"""No upstream may be given a directory that holds Writ's data directory (keys, database)."""

from __future__ import annotations

from pathlib import Path

from writ.engine.gateway.config import GatewayConfig
from writ.engine.gateway.exposure import secrets_exposed


def config(**upstreams: dict) -> GatewayConfig:
    return GatewayConfig.model_validate({"upstreams": upstreams})


def test_filesystem_root_above_the_data_dir_is_refused(tmp_path: Path) -> None:
    from writ.engine.core.settings import Settings
    from writ.engine.wiring.services import open_services

    home = tmp_path / "project" / ".writ"
    with open_services(Settings(home=home)):
        pass  # an initialized data directory (as `writ init` leaves it)
    cfg = config(fs={"command": "node", "args": ["server.js", str(tmp_path / "project")], "cwd": str(tmp_path)})
    problems = secrets_exposed(cfg, [home])
    assert len(problems) == 1
    assert "upstream 'fs' is given" in problems[0] and str(home) in problems[0]


def test_symlinked_root_is_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / ".writ").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    cfg = config(fs={"command": "node", "args": [str(link)]})
    assert secrets_exposed(cfg, [real / ".writ"])


def test_a_relative_root_is_taken_from_the_cwd_but_the_cwd_alone_is_not_a_root(tmp_path: Path) -> None:
    (tmp_path / ".writ").mkdir()
    alone = config(git={"command": "python", "args": ["-m", "mcp_server_git"], "cwd": str(tmp_path)})
    assert secrets_exposed(alone, [tmp_path / ".writ"]) == []
    dot = config(fs={"command": "node", "args": ["server.js", "."], "cwd": str(tmp_path)})
    assert secrets_exposed(dot, [tmp_path / ".writ"])


def test_sibling_directories_and_url_upstreams_are_fine(tmp_path: Path) -> None:
    cfg = config(
        fs={"command": "node", "args": ["server.js", str(tmp_path / "workspace")]},
        remote={"url": "http://127.0.0.1:9/mcp"},
    )
    assert secrets_exposed(cfg, [tmp_path / "writ-home", tmp_path / "workspace-other"]) == []


def test_writ_mcp_refuses_to_start_when_an_upstream_can_read_the_data_dir(tmp_path: Path) -> None:
    import subprocess
    import sys

    from writ.engine.core.settings import Settings
    from writ.engine.wiring.services import open_services

    home = tmp_path / "project" / ".writ"
    with open_services(Settings(home=home)):
        pass  # an initialized data directory (as `writ init` leaves it)
    cfg = tmp_path / "writ.toml"
    cfg.write_text(f'[upstreams.fs]\ncommand = "node"\nargs = ["server.js", "{tmp_path / "project"}"]\n')
    writ = Path(sys.executable).with_name("writ")
    r = subprocess.run([str(writ), "mcp", "--principal", "x", "--config", str(cfg), "--data-dir", str(home)],
                       check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error[secrets_exposed]: upstream 'fs' is given")
