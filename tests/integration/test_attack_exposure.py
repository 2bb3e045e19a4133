"""Issue 9, finding 3: an agent reads private keys through a filesystem (or git) upstream.

The start check skipped every argument starting with ``-`` (``--repository=/parent``), did not
expand ``~`` (a filesystem root ``~`` let a planner read ``keys/plan-bot.pem`` with the ordinary
read tool), ignored the upstream's own ``env`` (``HOME``) and checked only the data directory,
not a ``--key`` file kept elsewhere. Now every path an upstream could be given, read as it
could read it, is checked against every secret, and `writ mcp` refuses to start
(``secrets_exposed``, audited as ``start_refused``). Approvers' keys are written outside the
data directory. Real parts: `writ mcp` subprocesses, the npm filesystem server, mcp-server-git.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.gateway import FS_SERVER, audit_entries, free_port, register, require_upstreams, toml_list, toml_str

from writ.engine.cli.main import main
from writ.engine.core.settings import Settings
from writ.engine.gateway.config import load_config
from writ.engine.gateway.exposure import secret_paths, secrets_exposed

WRIT = Path(sys.executable).with_name("writ")


class Host:
    """A user's home (``home``) holding the data directory ``home/.writ``, a planner with a key in it."""

    def __init__(self, root: Path) -> None:
        self.node = require_upstreams()
        self.root = root
        self.home = root / "home"
        self.data_dir = self.home / ".writ"
        self.config = root / "config" / "writ.toml"
        self.config.parent.mkdir(parents=True)
        self.keys = register(self.data_dir, {"plan-bot": "planner"}, keys=True)

    def fs(self, *roots: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        """The filesystem server, rooted at ``roots`` as written, as the only upstream."""
        text = f"[upstreams.fs]\ncommand = {toml_str(self.node)}\nargs = {toml_list([str(FS_SERVER), *roots])}\n"
        text += "env = {" + ", ".join(f"{k} = {toml_str(v)}" for k, v in (env or {}).items()) + "}\n"
        self.config.write_text(text + (f"cwd = {toml_str(cwd)}\n" if cwd is not None else ""))

    def git(self, *args: str) -> None:
        """mcp-server-git with ``args`` as the only upstream."""
        self.config.write_text(f"[upstreams.git]\ncommand = {toml_str(sys.executable)}\n"
                               f"args = {toml_list(['-m', 'mcp_server_git', *args])}\n")

    def writ_mcp(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`writ mcp --principal plan-bot` as a subprocess, with ``HOME`` the host's home (and ``env``)."""
        return subprocess.run(
            [str(WRIT), *self.argv(*extra)], check=False, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=120, env={**os.environ, "HOME": str(self.home), **(env or {})},
            cwd=self.config.parent)

    def writ_mcp_here(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The same command in this process (quicker for the variants of one attack); the same result shape."""
        result = CliRunner().invoke(main, self.argv(*extra), env={"HOME": str(self.home), **(env or {})})
        return subprocess.CompletedProcess(["writ"], result.exit_code, result.stdout, result.stderr)

    def argv(self, *extra: str) -> list[str]:
        return ["mcp", "--principal", "plan-bot", "--config", str(self.config), "--data-dir", str(self.data_dir),
                *extra]


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def refused(host: Host, r: subprocess.CompletedProcess[str], given: str) -> str:
    """The one error line of a refused start, after checking it is one, names ``given`` and is audited."""
    assert r.returncode == 1 and r.stdout == "", r.stderr
    assert r.stderr.startswith("error[secrets_exposed]: upstream '")
    assert given in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    entries = [e.payload for e in audit_entries(host.data_dir) if e.kind == "start_refused"]
    assert entries and entries[-1]["code"] == "secrets_exposed" and entries[-1]["config"] == str(host.config)
    return r.stderr


def test_fs_root_tilde_exposes_keys(host: Host) -> None:
    host.fs("~")
    message = refused(host, host.writ_mcp(), f"is given {host.home} (written '~'), which contains Writ's data "
                                            f"directory {host.data_dir}")
    assert "set WRIT_HOME (or --data-dir) outside" in message


def test_fs_root_tilde_subdirectory_exposes_keys(host: Host) -> None:
    host.fs("~/.writ")
    refused(host, host.writ_mcp_here(), f"is given {host.data_dir} (written '~/.writ')")


def test_fs_root_tilde_with_the_upstreams_own_home(host: Host) -> None:
    """The gateway's HOME is elsewhere; the upstream's ``env`` sets the HOME its ``~`` expands with."""
    host.fs("~", env={"HOME": str(host.home)})
    refused(host, host.writ_mcp_here(env={"HOME": str(host.root / "elsewhere")}), f"is given {host.home} (written '~')")


def test_fs_root_dollar_var_exposes_keys(host: Host) -> None:
    host.fs("${WORKSPACE}/..", env={"WORKSPACE": str(host.home / "project")})
    refused(host, host.writ_mcp_here(), f"is given {host.home} (written '${{WORKSPACE}}/..')")


def test_fs_root_dollar_home_in_a_shell_command_exposes_keys(host: Host) -> None:
    """`sh -c 'exec node server.js "$HOME"'`: the shell expands it to the home that holds ``.writ``.

    ``HOME`` is not an ``env`` value of the entry (it is inherited): only ``$VAR`` expansion finds it.
    """
    script = f'exec {host.node} {FS_SERVER} "$HOME"'
    host.config.write_text(f"[upstreams.fs]\ncommand = \"/bin/sh\"\nargs = {toml_list(['-c', script])}\n")
    message = refused(host, host.writ_mcp(), f"is given {host.home} (written ")
    assert '"$HOME"' in message


def test_fs_root_relative_to_the_upstreams_cwd(host: Host) -> None:
    host.fs("..", cwd=host.data_dir / "keys")
    refused(host, host.writ_mcp_here(), f"is given {host.data_dir} (written '..')")


def test_fs_root_inside_the_keys_directory(host: Host) -> None:
    host.fs(str(host.data_dir / "keys"))
    refused(host, host.writ_mcp_here(), f"which is Writ's private keys {host.data_dir / 'keys'}")
    host.fs(str(host.data_dir / "keys" / "plan-bot-0.pem"))
    refused(host, host.writ_mcp_here(), f"which is inside Writ's private keys {host.data_dir / 'keys'}")


def test_git_repository_option_equals_parent(host: Host) -> None:
    host.git(f"--repository={host.home}")
    refused(host, host.writ_mcp(), f"is given {host.home} (written '--repository={host.home}')")
    host.git(f"-r{host.home}")
    refused(host, host.writ_mcp_here(), f"is given {host.home} (written '-r{host.home}')")


def test_git_repository_option_equals_a_path_with_a_space(tmp_path: Path) -> None:
    """`--repository=/srv/my files/home`: the option's value is one path, not the words either side of its space."""
    host = Host(tmp_path / "my files")
    host.git(f"--repository={host.home}")
    refused(host, host.writ_mcp_here(), f"is given {host.home} (written '--repository={host.home}')")


def test_key_file_outside_the_data_dir_exposed_by_a_root(host: Host) -> None:
    """`writ mcp --key FILE` with FILE under a directory an upstream serves."""
    shared = host.root / "shared"
    shared.mkdir()
    key = shared / "plan-bot.pem"
    key.write_bytes(host.keys["plan-bot"].read_bytes())
    key.chmod(0o600)
    host.fs(str(shared))
    message = refused(host, host.writ_mcp("--key", str(key)), f"which contains the key file {key} (--key)")
    assert "keep the key file outside every directory an upstream is given" in message


def test_approvers_key_directory_exposed_by_a_root(host: Host) -> None:
    config_home = host.root / "xdg"
    (config_home / "writ" / "keys").mkdir(parents=True)
    host.fs(str(config_home))
    refused(host, host.writ_mcp_here(env={"XDG_CONFIG_HOME": str(config_home)}),
            f"which contains the approvers' key directory {config_home / 'writ' / 'keys'}")


def test_a_root_beside_the_data_dir_starts(host: Host) -> None:
    """The check refuses exposures, not upstreams: a sibling workspace is served (and exits at EOF)."""
    (host.home / "work").mkdir()
    host.fs("~/work", env={"TMPDIR": str(host.home)})
    r = host.writ_mcp()
    assert r.returncode == 0 and "error[" not in r.stderr, r.stderr


def test_http_gateway_refuses_to_start_when_a_root_exposes_keys(host: Host) -> None:
    """`writ serve --config` starts the same upstreams for HTTP agents: the same check, before anything listens."""
    host.fs("~")
    # A Temporal address nobody listens on: if the check let it start, no dev server is left behind.
    temporal = {"WRIT_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "WRIT_TEMPORAL_CONNECT_TIMEOUT_S": "2"}
    proc = subprocess.Popen([str(WRIT), "serve", "--port", "0", "--config", str(host.config),
                             "--data-dir", str(host.data_dir)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "HOME": str(host.home), **temporal}, cwd=host.config.parent)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("writ serve --config started although an upstream is given the home holding .writ")
    refused(host, subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
            f"is given {host.home} (written '~'), which contains Writ's data directory {host.data_dir}")


def test_approver_key_written_into_data_dir_is_refused(settings: Settings) -> None:
    settings_home = settings.home

    def writ(*args: str | Path, code: int = 0) -> str:
        result = CliRunner().invoke(main, [*map(str, args), "--data-dir", str(settings_home)])
        assert result.exit_code == code, result.output
        return result.stdout if code == 0 else result.stderr

    writ("init")
    writ("principals", "add", "alice", "--role", "approver")
    writ("principals", "add", "plan-bot", "--role", "planner")
    out = writ("keys", "new", "--principal", "alice")
    path = Path(re.search(r"private key written to (\S+) \(mode 0600\)", out).group(1))  # type: ignore[union-attr]
    own = Path(os.environ["XDG_CONFIG_HOME"]) / "writ" / "keys"
    assert path.parent == own and stat.S_IMODE(own.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"sign with `writ approve PLAN --key {path}`" in out
    assert not (settings_home / "keys").exists() or not any((settings_home / "keys").glob("alice-*"))

    planner = writ("keys", "new", "--principal", "plan-bot")
    assert f"private key written to {settings_home / 'keys'}/plan-bot-" in planner  # where the gateway finds it

    # <data dir>/keys/ exists now (the planner's key is in it): only the check keeps alice's out of it.
    error = writ("keys", "new", "--principal", "alice", "--out", settings_home / "keys" / "alice.pem", code=1)
    assert error.startswith(f"error[key_file_insecure]: {settings_home / 'keys' / 'alice.pem'} is inside the data "
                            f"directory {settings_home}")
    assert not (settings_home / "keys" / "alice.pem").exists()
    assert len(writ("keys", "list", "--principal", "alice").splitlines()) == 2  # header + the first key only

    os.chmod(own, 0o755)
    assert writ("keys", "new", "--principal", "alice", code=1).startswith("error[key_dir_insecure]: keys directory")


# --- spellings a second look found (red team, 2026-11-30): each was missed before words were split ---------


def _config_with(path: Path, command: str, args: list[str], env: dict[str, str] | None = None) -> Path:
    text = f"[upstreams.fs]\ncommand = {toml_str(command)}\nargs = {toml_list(args)}\n"
    text += "env = {" + ", ".join(f"{k} = {toml_str(v)}" for k, v in (env or {}).items()) + "}\n"
    path.write_text(text)
    return path


@pytest.mark.parametrize("args,env", [
    pytest.param(["-c", "exec node server.js ~/.writ"], {}, id="shell_wrapped_command"),
    pytest.param(["--roots=[\"~/.writ\"]"], {}, id="json_list_value"),
    pytest.param(["--allowed", "[\"~\"]"], {}, id="json_list_argument"),
    pytest.param(["--dirs=/tmp;~/.writ"], {}, id="semicolon_list"),
    pytest.param(["--dirs=/tmp ~/.writ"], {}, id="space_list"),
    pytest.param(["run", "--mount", "type=bind,src=~/.writ,dst=/data", "img"], {}, id="docker_mount_source"),
    pytest.param([], {"ALLOWED_ROOT_PATH": "~/.writ"}, id="env_named_path"),
    pytest.param([], {"MEMORY_FILE_PATH": "~/.writ/writ.sqlite"}, id="memory_server_file_path"),
    pytest.param([], {"FS_ROOTS": "[\"~\"]"}, id="env_json_list"),
])
def test_hidden_path_spellings_expose_keys(tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    home = tmp_path / "home"
    data = home / ".writ"
    register(data, {"plan-bot": "planner"}, keys=True)
    config = _config_with(tmp_path / "writ.toml", "/bin/sh", args, env)
    assert secrets_exposed(load_config(config), secret_paths(Settings(home=data)), {"HOME": str(home)})


def test_relative_key_file_in_a_comma_list_exposes_it(tmp_path: Path) -> None:
    """`writ mcp --key plan-bot.pem` beside writ.toml, and an upstream given `--files=notes.md,plan-bot.pem`."""
    data = tmp_path / "home" / ".writ"
    keys = register(data, {"plan-bot": "planner"}, keys=True)
    key = tmp_path / "plan-bot.pem"
    key.write_bytes(keys["plan-bot"].read_bytes())
    config = _config_with(tmp_path / "writ.toml", "node", ["server.js", "--files=notes.md,plan-bot.pem"])
    config_dir_upstream = load_config(config)
    assert secrets_exposed(config_dir_upstream, secret_paths(Settings(home=data), [key]),
                           {"HOME": str(tmp_path / "home")})
