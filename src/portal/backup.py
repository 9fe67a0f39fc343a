"""Backups: the whole database in one file, and putting it back.

* SQLite: SQLite's online backup API (``sqlite3.Connection.backup``), never a
  file copy. The copy is taken in one step, inside one read transaction, so it
  is the database as it was at one instant, while the portal keeps writing
  (WAL mode: readers and writers do not block each other). A copy of the file
  could catch a page half-written or leave out what is still in the ``-wal``
  file.
* PostgreSQL: ``pg_dump --format=custom`` (one snapshot transaction, so it is
  consistent while the portal writes) and ``pg_restore --clean --if-exists
  --no-owner`` in a single transaction (all or nothing).

A backup is written next to its final name and renamed into place only once it
has been checked, so a failed backup never leaves a file that looks good.
Restoring refuses to replace a database that holds anything unless ``force``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from portal.db import SQLITE_BUSY_TIMEOUT, sqlite_path

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_MAGIC = b"PGDMP"
# The table every migrated portal database has (Piccolo's record of migrations).
MIGRATION_TABLE = "migration"


class BackupError(Exception):
    """A backup or restore that did not happen; ``status`` is the command's exit status
    (2: the request was wrong, e.g. a file in the way; 1: the work failed)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Outcome:
    engine: str  # "SQLite" or "PostgreSQL"
    path: Path
    size: int = 0  # of the backup written
    notes: list[str] = field(default_factory=list)


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


async def backup(database_url: str, target: Path, *, force: bool = False) -> Outcome:
    """Write a backup of the database at ``database_url`` to ``target``."""
    target = Path(target)
    if target.is_dir():
        raise BackupError(f"{target} is a directory; give the backup file's name", 2)
    if target.exists() and not force:
        raise BackupError(f"{target} already exists; add --force to replace it", 2)
    if not target.parent.is_dir():
        raise BackupError(f"the folder {target.parent} does not exist", 2)
    partial = target.with_name(f".{target.name}.partial")
    try:
        if is_postgres_url(database_url):
            outcome = await _pg_backup(database_url, partial)
        else:
            outcome = await asyncio.to_thread(_sqlite_backup, sqlite_path(database_url), partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    outcome.path = target
    outcome.size = target.stat().st_size
    return outcome


async def restore(database_url: str, source: Path, *, force: bool = False) -> Outcome:
    """Replace the database at ``database_url`` with the backup in ``source``."""
    source = Path(source)
    if not source.is_file():
        raise BackupError(f"no backup file at {source}", 2)
    kind = backup_kind(source)
    if is_postgres_url(database_url):
        if kind != "PostgreSQL":
            raise BackupError(_wrong_kind(source, kind, "PostgreSQL"), 2)
        return await _pg_restore(database_url, source, force=force)
    if kind != "SQLite":
        raise BackupError(_wrong_kind(source, kind, "SQLite"), 2)
    return await asyncio.to_thread(_sqlite_restore, sqlite_path(database_url), source, force)


def backup_kind(path: Path) -> str:
    """Which engine wrote the backup in ``path``: "SQLite", "PostgreSQL", or "" for neither."""
    with path.open("rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if head.startswith(SQLITE_MAGIC):
        return "SQLite"
    if head.startswith(PG_MAGIC):
        return "PostgreSQL"
    return ""


def _wrong_kind(source: Path, kind: str, wanted: str) -> str:
    if not kind:
        return f"{source} is not a portal backup"
    return f"{source} is a {kind} backup, but DATABASE_URL points at {wanted}"


# SQLite ------------------------------------------------------------------------


def _sqlite_uri(path: Path, mode: str) -> str:
    return f"{path.resolve().as_uri()}?mode={mode}"


def _sqlite_backup(database: Path, partial: Path) -> Outcome:
    if not database.is_file():
        raise BackupError(f"no SQLite database at {database}")
    try:
        # mode=rw: never create an empty database where the real one was expected.
        source = sqlite3.connect(_sqlite_uri(database, "rw"), uri=True, timeout=SQLITE_BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open the SQLite database at {database}: {exc}") from exc
    partial.unlink(missing_ok=True)
    copy = sqlite3.connect(partial)
    try:
        # The backup is one self-contained file, not a database with a WAL beside it.
        _copy_pages(source, copy, partial, "DELETE", f"the backup of {database} failed")
    finally:
        copy.close()
        source.close()
    return Outcome(engine="SQLite", path=partial)


def _copy_pages(
    source: sqlite3.Connection,
    target: sqlite3.Connection,
    target_path: Path,
    journal_mode: str,
    failed: str,
) -> None:
    """Every page of ``source`` into ``target`` in one step (pages=-1: one read
    transaction, so one instant), in ``journal_mode``, then checked; a SQLite error
    becomes ``BackupError("{failed}: …")``."""
    try:
        source.backup(target, pages=-1)
        target.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()
        _check_integrity(target, target_path)
    except sqlite3.Error as exc:
        raise BackupError(f"{failed}: {exc}") from exc


def _check_integrity(connection: sqlite3.Connection, path: Path) -> None:
    result = connection.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"{path} fails SQLite's integrity check: {result}")


def _sqlite_restore(database: Path, source: Path, force: bool) -> Outcome:
    try:
        backup_db = sqlite3.connect(_sqlite_uri(source, "ro"), uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source}: {exc}", 2) from exc
    try:
        try:
            _check_integrity(backup_db, source)
            has_migrations = backup_db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                (MIGRATION_TABLE,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise BackupError(f"{source} is not a usable SQLite backup: {exc}", 2) from exc
        if not has_migrations:
            raise BackupError(f"{source} is not a portal backup (no migration table)", 2)
        if database.exists() and database.stat().st_size > 0 and not force:
            raise BackupError(
                f"{database} already exists; add --force to replace it with the backup", 2
            )
        database.parent.mkdir(parents=True, exist_ok=True)
        try:
            target = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot open {database}: {exc}") from exc
        try:
            # The database is the backup's, whole, or unchanged.
            _copy_pages(backup_db, target, database, "WAL", f"restoring into {database} failed")
        finally:
            target.close()
    finally:
        backup_db.close()
    return Outcome(engine="SQLite", path=database)


# PostgreSQL --------------------------------------------------------------------


def _pg_connection(url: str) -> tuple[str, dict[str, str]]:
    """The URL for libpq without its password (which goes into PGPASSWORD, not onto
    the command line where any user could read it), and the environment."""
    env = dict(os.environ)
    parts = urlsplit(url)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        userinfo = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{userinfo}@{host}")
    return urlunsplit(parts), env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not installed: install the PostgreSQL client tools "
            "(Debian: apt-get install postgresql-client)"
        )
    return path


async def _run(*command: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def _tool_major(tool: str, env: dict[str, str]) -> int:
    _, out, _ = await _run(tool, "--version", env=env)
    match = re.search(r"\)\s*(\d+)", out) or re.search(r"(\d+)", out)
    return int(match.group(1)) if match else 0


async def _server(url: str) -> tuple[int, int]:
    """(the server's major version, the number of tables in its public schema)."""
    import asyncpg

    try:
        connection = await asyncpg.connect(url, timeout=10)
    except Exception as exc:
        raise BackupError(f"cannot connect to the database: {_one_line(exc)}") from exc
    try:
        tables = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        return connection.get_server_version().major, int(tables)
    finally:
        await connection.close()


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # pg_dump and pg_restore put the reason on their first error line.
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or [text])[0]


def _version_notes(tool: str, tool_major: int, server_major: int) -> list[str]:
    if tool_major == server_major or not tool_major:
        return []
    return [
        f"{tool} is version {tool_major}, the server {server_major}: install the client "
        f"tools of version {server_major} (postgresql-client-{server_major}) to be sure "
        "backups and restores match the server"
    ]


async def _pg_backup(url: str, partial: Path) -> Outcome:
    pg_dump = _tool("pg_dump")
    pg_restore = _tool("pg_restore")
    dsn, env = _pg_connection(url)
    server_major, _ = await _server(url)
    dump_major = await _tool_major(pg_dump, env)
    if dump_major and dump_major < server_major:
        raise BackupError(
            f"pg_dump {dump_major} cannot dump a PostgreSQL {server_major} server: install "
            f"postgresql-client-{server_major}"
        )
    status, _, err = await _run(
        pg_dump, "--format=custom", "--no-password", f"--file={partial}", f"--dbname={dsn}",
        env=env,
    )  # fmt: skip
    if status != 0:
        raise BackupError(f"pg_dump failed: {_one_line(err)}")
    # The archive must be readable by the tool that will restore it.
    status, _, err = await _run(pg_restore, "--list", str(partial), env=env)
    if status != 0:
        raise BackupError(f"the backup cannot be read back: {_one_line(err)}")
    return Outcome(
        engine="PostgreSQL", path=partial, notes=_version_notes("pg_dump", dump_major, server_major)
    )


async def _pg_restore(url: str, source: Path, *, force: bool) -> Outcome:
    pg_restore = _tool("pg_restore")
    dsn, env = _pg_connection(url)
    status, listing, err = await _run(pg_restore, "--list", str(source), env=env)
    if status != 0:
        raise BackupError(f"{source} cannot be read: {_one_line(err)}", 2)
    in_backup = set(re.findall(r"^\d+; \d+ \d+ TABLE public (\S+) ", listing, re.MULTILINE))
    server_major, tables = await _server(url)
    if tables and not force:
        raise BackupError(
            f"the database {urlsplit(dsn).path.lstrip('/')} already has {tables} table(s); "
            "add --force to replace them with the backup",
            2,
        )
    restore_major = await _tool_major(pg_restore, env)
    status, _, err = await _run(
        pg_restore, "--clean", "--if-exists", "--no-owner", "--single-transaction",
        "--exit-on-error", "--no-password", f"--dbname={dsn}", str(source),
        env=env,
    )  # fmt: skip
    if status != 0:
        raise BackupError(f"pg_restore failed, the database is unchanged: {_one_line(err)}")
    notes = _version_notes("pg_restore", restore_major, server_major)
    left = sorted(set(await _public_tables(url)) - in_backup)
    if left:
        notes.append(
            f"table(s) the backup does not have were left in place: {', '.join(left)} "
            "(made by a migration newer than the backup?)"
        )
    return Outcome(engine="PostgreSQL", path=source, notes=notes)


async def _public_tables(url: str) -> list[str]:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=10)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return [str(row["tablename"]) for row in rows]
    finally:
        await connection.close()
