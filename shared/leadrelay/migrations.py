"""The body of every service's Alembic env.py, so each env.py is two lines."""

import sys
import tempfile
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, create_engine


def run_env(target_metadata: MetaData) -> None:
    """Run migrations on the connection LeadRelay passes in (see leadrelay.db.run_migrations)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "services run their migrations at start-up; generate revisions with `python -m leadrelay.migrations`"
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def make_revision(migrations_dir: Path, message: str) -> None:
    """Autogenerate a revision by diffing the models against a scratch SQLite database at head."""
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/scratch.db")
        config = Config()
        config.set_main_option("script_location", str(migrations_dir))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            command.revision(config, message=message, autogenerate=True)


if __name__ == "__main__":
    # python -m leadrelay.migrations services/<name>/migrations "what changed"
    make_revision(Path(sys.argv[1]), sys.argv[2])
