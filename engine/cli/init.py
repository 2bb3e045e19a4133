"""``writ init``: create a data directory, its database, and the settings every command shares.

    $ writ init --data-dir /srv/writ --policy-dir /srv/policies
    initialised /srv/writ: database sqlite:////srv/writ/writ.sqlite (schema 0004 created), policies /srv/policies; ...
    $ writ init --data-dir /srv/writ              # again: migrates, says so, exit 0
    $ writ init --data-dir /srv/writ --policy-dir /srv/other --reconfigure

Every other command refuses a data directory that ``writ init`` has not made
(``error[store_missing]``) and uses the policy directory and database recorded here.
"""

from __future__ import annotations

from pathlib import Path

import click

from writ.engine.cli.common import writ_command
from writ.engine.cli.support import echo_json


@click.command("init")
@click.option("--policy-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Policies every command of this data directory uses (default: $WRIT_POLICY_DIR, "
                   "else the shipped ones).")
@click.option("--database-url", default=None, metavar="URL",
              help="Database of this data directory (default: $WRIT_DATABASE_URL, else SQLite writ.sqlite in it).")
@click.option("--reconfigure", is_flag=True, help="Record --policy-dir / --database-url over the recorded ones.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@writ_command(store="none")
def init(policy_dir: Path | None, database_url: str | None, reconfigure: bool, as_json: bool) -> None:
    """Create the data directory (mode 0700) and its database, and record the shared settings.

    The policy directory and the database URL are recorded in <data dir>/settings.json; every
    other command reads them there, so `writ approve` and the gateway always use the same
    policies. Running it again is safe: it migrates the database and changes nothing else.

    \b
    Example:
      writ init
      writ init --data-dir /srv/writ --policy-dir policies/
      writ init --data-dir /srv/writ --database-url postgresql+psycopg://writ@db.internal/writ
    """
    from writ.engine.core.settings import Settings
    from writ.engine.wiring.datadir import init_data_dir

    settings: Settings = click.get_current_context().obj
    update: dict[str, object] = {}
    if policy_dir is not None:
        update["policy_dir"] = policy_dir.expanduser().absolute()
    if database_url is not None:
        update["database_url"] = database_url
    report = init_data_dir(settings.model_copy(update=update), reconfigure=reconfigure)
    if as_json:
        echo_json({"data_dir": str(report.home), "created": report.created, "settings_file": str(report.settings),
                   "policy_dir": str(report.recorded.policy_dir) if report.recorded.policy_dir else None,
                   "database": report.database, "schema_before": report.revision_before,
                   "schema": report.revision, "changed": report.changed, "instance_key": report.instance_key})
        return
    click.echo(report.message())
