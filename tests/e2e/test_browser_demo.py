"""`writ demo --browser` as a user runs it: alice and bob approve in Chromium, through the web form, with keys it made."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from support.browser import require_chromium
from support.gateway import require_upstreams

from writ.engine.core.db import open_database
from writ.engine.core.settings import Settings


def test_the_demo_approves_in_chromium(tmp_path: Path) -> None:
    require_upstreams()
    require_chromium()
    data = tmp_path / "demo-data"
    done = subprocess.run([sys.executable, "-m", "writ.engine.cli.demo", "--browser", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    approvals = re.findall(r"^\s+(alice|bob)\s+approves plan ([AB]) \([0-9a-f]{12}\) in Chromium, with the key it "
                           r"made: (\d)/2 approvals", done.stdout, re.MULTILINE)
    assert approvals == [("alice", "A", "1"), ("bob", "A", "2"), ("alice", "B", "1"), ("bob", "B", "2")]
    assert done.stdout.rstrip().splitlines()[-1].startswith("demo OK: plan A completed")
    with open_database(Settings(home=data), create=False) as store, store.connect() as conn:
        enrolled = conn.execute(text("SELECT principal FROM web_keys ORDER BY principal")).scalars().all()
        counted = conn.execute(text("SELECT a.approver FROM plan_approvals a JOIN web_keys k ON k.key_id = a.key_id"
                                    " ORDER BY a.seq")).scalars().all()
    assert enrolled == ["alice", "bob"] and counted == ["alice", "bob", "alice", "bob"]
