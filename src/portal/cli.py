"""The `portal` command: serve, worker, jobs (list, run), migrate, demo, users (create,
set-password, deactivate, reset-2fa), stripe reconcile, stripe payouts,
sales expire, packages expire, memberships arrears, reminders send, reports rebuild,
reports verify, import, backup, restore."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeAlias, TypeVar

from portal.settings import ConfigurationError, check_served_address, get_settings

T = TypeVar("T")


class ArgumentParser(argparse.ArgumentParser):
    """Bad arguments: one line saying why, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"portal: {message}\n")


def fail(message: str, status: int = 2) -> NoReturn:
    print(f"portal: {message}", file=sys.stderr)
    raise SystemExit(status)


async def _with_database(action: Callable[[], Awaitable[Any]]) -> Any:
    from portal import db

    settings = get_settings()
    engine = db.make_engine(settings.database_url)
    db.bind_engine(engine)
    await db.prepare(engine)
    await db.start_pool(engine, min_size=1, max_size=2)
    try:
        return await action()
    finally:
        await db.close_pool(engine)


def _read_password(args: argparse.Namespace) -> str:
    if not args.password_stdin:
        fail("give the password on standard input with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        fail("no password on standard input")
    return password


async def _require_migrated() -> None:
    from portal.migrate import pending_migrations

    pending = await pending_migrations()
    if pending:
        fail(f"{len(pending)} migration(s) pending; run `portal migrate` first", 1)


def _on_migrated(work: Callable[[], Awaitable[T]], *, name_fields: bool = False) -> T:
    """Run ``work`` on the configured database once it is migrated (else exit 1, saying so).

    A service's refusal ends the command with its message and status 2: ``NotFound``
    as it is, ``Invalid`` its messages (``field: message`` with ``name_fields``).
    """
    from portal.errors import Invalid, NotFound

    async def run() -> T:
        await _require_migrated()
        return await work()

    try:
        result: T = asyncio.run(_with_database(run))
    except Invalid as exc:
        fail("; ".join(f"{k}: {v}" if name_fields else v for k, v in exc.errors.items()))
    except NotFound as exc:
        fail(str(exc.detail))
    return result


def cmd_migrate(args: argparse.Namespace) -> None:
    from portal.migrate import apply_migrations

    async def run() -> list[str]:
        return await apply_migrations(quiet=True)

    applied = asyncio.run(_with_database(run))
    if applied:
        print(f"Applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("The database is up to date.")


def cmd_demo(args: argparse.Namespace) -> None:
    from portal.demo import DEMO_PASSWORD, load_demo

    loaded = _on_migrated(lambda: load_demo(if_empty=args.if_empty))
    if loaded:
        print("Demo data loaded.")
    else:
        print("Demo data already present; nothing changed.")
    from portal.demo import DEMO_ACCOUNTS

    print(f"\nDemo sign-ins (password for all: {DEMO_PASSWORD}):")
    for email, role, _name, _locs in DEMO_ACCOUNTS:
        print(f"  {role:<11} {email}")


def uvicorn_options() -> dict[str, Any]:
    """What ``portal serve`` and ``make run`` hand uvicorn besides the address.

    * No forwarded headers at the server: the app believes them from the
      proxies in ``FORWARDED_ALLOW_IPS`` only (``portal.web.requestcontext``,
      where the same proxies may also hand in the request id). Left on,
      uvicorn would believe 127.0.0.1 by default.
    * No access log and no logging set-up of its own: the portal writes one
      structured line per request (route template, so a reset link's token
      never reaches the log) and uvicorn's messages go through the same
      handler (``portal.logs``).
    * No ``Server`` header: responses do not name the server.
    """
    return {
        "proxy_headers": False,
        "access_log": False,
        "log_config": None,
        "log_level": "info",
        "server_header": False,
    }


@contextlib.contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """With several worker processes, one Prometheus multiprocess directory for them.

    Set before uvicorn starts the workers, which inherit it (``portal.metrics``);
    made fresh and removed afterwards, so no process's values outlive the run.
    A directory the operator set (shared with the job worker) is left alone.
    """
    from portal.metrics import MULTIPROCESS_ENV

    if workers <= 1 or os.environ.get(MULTIPROCESS_ENV, "").strip():
        yield
        return
    directory = tempfile.mkdtemp(prefix="portal-metrics-")
    os.environ[MULTIPROCESS_ENV] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from portal import logs

    if args.port is not None:
        # The settings of this process and of the workers it starts (which
        # inherit the environment) read PORT: the default BASE_URL then names
        # the port actually served.
        os.environ["PORT"] = str(args.port)
        get_settings.cache_clear()
    settings = get_settings()
    check_served_address(settings, args.host, settings.port)
    logs.configure(settings.log_format, level=settings.log_level)
    if not settings.embedded:
        asyncio.run(_with_database(_require_migrated))
    with metrics_directory(args.workers or 1):
        uvicorn.run(
            "portal.asgi:app",
            host=args.host,
            port=settings.port,
            workers=args.workers,
            **uvicorn_options(),
        )


def cmd_users_create(args: argparse.Namespace) -> None:
    from portal.errors import NotFound
    from portal.locations.tables import Location
    from portal.users import service

    password = _read_password(args)

    async def run() -> int:
        location_ids: set[int] = set()
        for slug in args.location or []:
            row = await Location.select(Location.id).where(Location.slug == slug).first().run()
            if row is None:
                raise NotFound(f"no location with slug {slug!r}")
            location_ids.add(int(row["id"]))
        return await service.create_user(
            None,
            service.UserInput(
                email=args.email,
                name=args.name or "",
                role=args.role,
                location_ids=frozenset(location_ids),
                password=password,
            ),
        )

    user_id = _on_migrated(run, name_fields=True)
    print(f"Created {args.role} {args.email} (id {user_id}).")


def cmd_users_set_password(args: argparse.Namespace) -> None:
    from portal.users import service

    password = _read_password(args)

    async def run() -> None:
        user = await service.find_by_email(args.email)
        await service.set_password(None, user["id"], password)

    _on_migrated(run)
    print(f"Password changed for {args.email}; their sessions were ended.")


def cmd_users_deactivate(args: argparse.Namespace) -> None:
    from portal.users import service

    async def run() -> bool:
        user = await service.find_by_email(args.email)
        return await service.set_active(None, user["id"], False)

    changed = _on_migrated(run)
    print(f"Deactivated {args.email}." if changed else f"{args.email} was already inactive.")


def cmd_users_reset_2fa(args: argparse.Namespace) -> None:
    from portal.auth import twostep
    from portal.users import service

    async def run() -> twostep.Factors:
        user = await service.find_by_email(args.email)
        return await twostep.reset(get_settings(), None, user["id"])

    before = _on_migrated(run)
    print(
        f"Two-step sign-in reset for {args.email}: removed "
        f"{'an authenticator app, ' if before.totp else ''}{before.passkeys} passkey(s) and "
        f"{before.recovery_codes_left} unused recovery code(s); their sessions were ended "
        "and they were emailed."
    )


def _day(text: str) -> date:
    """An argparse type: a calendar day written YYYY-MM-DD."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


class _StripeRun(Protocol):
    mismatches: Any

    def lines(self) -> list[str]: ...


def _run_against_stripe(work: Callable[[Any], Awaitable[_StripeRun]]) -> None:
    """A command that reads Stripe: the gateway from the settings (closed afterwards), the
    summary printed; exit 1 when Stripe cannot be read, 3 when the books disagree with it."""
    from portal.payments.gateway import GatewayError, StripeGateway

    gateway = StripeGateway.from_settings(get_settings())
    # The summary (or the one-line error) says everything; no log noise on stderr.
    logging.getLogger("portal").addHandler(logging.NullHandler())

    async def run() -> _StripeRun:
        try:
            return await work(gateway)
        finally:
            await gateway.aclose()

    try:
        result = _on_migrated(run)
    except GatewayError as exc:
        fail(f"Stripe could not be read: {exc.message} ({' '.join(exc.detail.split())})", 1)
    print("\n".join(result.lines()))
    if result.mismatches:
        raise SystemExit(3)


def cmd_stripe_reconcile(args: argparse.Namespace) -> None:
    from portal.payments import service

    since = datetime.combine(args.since, datetime.min.time(), tzinfo=UTC)
    if args.until is not None:
        if args.until < args.since:
            fail("--until is before --since")
        until = datetime.combine(args.until + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    else:
        # Up to now, with a margin: Stripe's creation times are whole seconds.
        until = datetime.now(tz=UTC).replace(microsecond=0) + timedelta(minutes=1)
    if since >= until:
        fail("--since is in the future")
    _run_against_stripe(lambda gateway: service.reconcile(gateway, since, until))


def cmd_stripe_payouts(args: argparse.Namespace) -> None:
    from portal.payments import payouts

    today = datetime.now(tz=UTC).date()
    since = args.since if args.since is not None else today - timedelta(days=30)
    if since > today + timedelta(days=31):
        fail("--since is too far in the future")
    _run_against_stripe(lambda gateway: payouts.import_payouts(gateway, since))


def _expired_line(sessions: int, sales: int, value_cents: dict[str, int]) -> str:
    from portal.money import format_money

    breakage = ", ".join(format_money(v, c) for c, v in sorted(value_cents.items()))
    return (
        f"Expired {sessions} unused session(s) of {sales} package(s); "
        f"breakage recognised: {breakage}."
    )


def cmd_sales_expire(args: argparse.Namespace) -> None:
    from portal.sales import service

    result = _on_migrated(service.expire_due)
    if not result.sessions:
        print("No package had unused sessions past its validity; nothing changed.")
        return
    print(_expired_line(result.sessions, result.sales, result.value_cents))


def _progress(done: int, total: int, what: str) -> None:
    """One line rewritten in place on a terminal; nothing when stderr is a file."""
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        print(f"\r{done}/{total} {what[:60]:<60}", end=end, file=sys.stderr, flush=True)


def cmd_reports_rebuild(args: argparse.Namespace) -> None:
    from portal.reports import totals

    async def run() -> int:
        await _require_migrated()
        return await totals.rebuild(args.since, progress=_progress)

    steps = asyncio.run(_with_database(run))
    since = f" from {args.since.isoformat()}" if args.since else ""
    print(f"Rebuilt the daily totals{since}: {steps} month(s), every location.")


def cmd_reports_verify(args: argparse.Namespace) -> None:
    from portal.reports import totals

    async def run() -> totals.Verification:
        await _require_migrated()
        return await totals.verify(progress=_progress)

    result = asyncio.run(_with_database(run))
    for difference in result.differences:
        print(difference.line())
    if result.differences:
        print(
            f"{len(result.differences)} daily total(s) differ from the rows; "
            "`portal reports rebuild` recomputes them."
        )
        raise SystemExit(1)
    print(f"The daily totals of {result.checked} month(s) equal the rows, every location.")


def cmd_memberships_arrears(args: argparse.Namespace) -> None:
    from portal.memberships import desk, subscriptions

    async def run() -> list[int]:
        await _require_migrated()
        await desk.fall_due()
        return await subscriptions.enforce_arrears()

    frozen = asyncio.run(_with_database(run))
    if not frozen:
        print("No membership is past its grace period with bookable sessions; nothing changed.")
        return
    print(f"Sessions of {len(frozen)} membership(s) in arrears can no longer be booked.")


def cmd_packages_expire(args: argparse.Namespace) -> None:
    from portal.bookings import expiry

    result = _on_migrated(expiry.expire_packages)
    if not result.changed_anything:
        print("No package had expired with sessions left or booked; nothing changed.")
        return
    if result.released:
        print(
            f"Released {len(result.released)} future booking(s) of expired packages; "
            "each client was sent a cancellation."
        )
    if result.expiry.sessions:
        expired = result.expiry
        print(_expired_line(expired.sessions, expired.sales, expired.value_cents))


def cmd_reminders_send(args: argparse.Namespace) -> None:
    from portal.bookings import notify

    result = _on_migrated(notify.send_reminders)
    print(
        f"Reminders for tomorrow's appointments: {result.sent} sent, "
        f"{result.skipped} skipped (reminders switched off), {result.failed} failed."
    )
    if result.failed:
        raise SystemExit(1)


def cmd_worker(args: argparse.Namespace) -> None:
    from portal.jobs import queue

    settings = get_settings()
    if settings.is_sqlite:
        fail(
            "with SQLite the jobs run inside the server process (`portal serve`, `make run`); "
            "`portal worker` needs PostgreSQL (DATABASE_URL)"
        )
    from portal import logs

    # The server's format (LOG_FORMAT, LOG_LEVEL): one log pipeline reads both.
    logs.configure(settings.log_format, level=settings.log_level)
    jobs = queue.build(settings)

    async def run() -> None:
        await _require_migrated()
        await queue.run_worker(jobs)

    asyncio.run(_with_database(run))


def cmd_jobs_list(args: argparse.Namespace) -> None:
    from portal.jobs import service

    settings = get_settings()

    async def run() -> list[service.JobStatus]:
        await _require_migrated()
        return await service.overview(settings)

    for job in asyncio.run(_with_database(run)):
        last = (
            f"{job.last['status']} {job.last['started_at']:%Y-%m-%d %H:%M} UTC"
            if job.last
            else "never run"
        )
        nxt = f"{job.next_run:%Y-%m-%d %H:%M} UTC" if job.next_run else "-"
        print(f"{job.name:<17} {job.schedule or 'off':<14} last: {last:<36} next: {nxt}")


class ProgressBar:
    """``[#####.....] 12/40 Sending reminders`` redrawn on one terminal line (standard error)."""

    WIDTH = 30

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.drawn = False

    async def __call__(self, done: int, total: int, step: str) -> None:
        filled = self.WIDTH * done // total if total else 0
        bar = "#" * filled + "." * (self.WIDTH - filled)
        figures = f"{done}/{total}" if total else ""
        self.stream.write(f"\r[{bar}] {figures} {step}"[:120].ljust(80))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def cmd_jobs_run(args: argparse.Namespace) -> None:
    from portal.jobs import catalog, queue

    if catalog.find(args.job) is None:
        fail(f"no job {args.job!r}; the jobs are {', '.join(s.name for s in catalog.JOBS)}")
    settings = get_settings()
    bar = ProgressBar() if sys.stderr.isatty() else None
    # The run's record says everything; no log noise on stderr.
    logging.getLogger("portal").addHandler(logging.NullHandler())

    async def run() -> Any:
        await _require_migrated()
        return await queue.run_here(args.job, settings, also_report_to=bar)

    try:
        result = asyncio.run(_with_database(run))
    except Exception as exc:
        if bar is not None:
            bar.close()
        fail(f"the job failed: {type(exc).__name__}: {exc}", 1)
    if bar is not None:
        bar.close()
    print(result.summary)
    if result.attention:
        print(f"portal: needs attention: {result.attention}", file=sys.stderr)
        raise SystemExit(3)


def _import_mapping(kind: str, option: str | None, headers: list[str]) -> Any:
    """The column mapping: a JSON file (layout column → file header), a saved one by
    name, or guessed from the file's header; a function the run awaits."""
    import json

    from portal.imports import service as imports
    from portal.imports.layouts import LAYOUTS, guess_mapping

    given: dict[str, str] | None = None
    if option is None:
        given = guess_mapping(LAYOUTS[kind], headers)
    elif option.endswith(".json") or Path(option).is_file():
        try:
            loaded = json.loads(Path(option).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            fail(f"cannot read the mapping {option}: {exc}")
        if not isinstance(loaded, dict):
            fail(f"the mapping {option} is not a JSON object (column → header)")
        given = {str(k): str(v) for k, v in loaded.items()}

    async def mapping() -> dict[str, str]:
        return given if given is not None else await imports.saved_mapping(kind, str(option))

    return mapping


async def _import_actor(email: str | None) -> Any:
    """The staff account an import from the command line acts as: ``--by``, else the
    first active owner (appointments are booked, and batches audited, in its name)."""
    from portal.auth.service import MANAGER, OWNER, actor_of, normalize_email
    from portal.auth.tables import User

    query = User.select(User.id.as_alias("user_id"), User.email, User.name, User.role).where(
        User.active.eq(True) & User.role.is_in([OWNER, MANAGER])
    )
    if email:
        query = query.where(User.email == normalize_email(email))
    else:
        query = query.where(User.role == OWNER).order_by(User.id)
    row = await query.first().run()
    if row is None:
        if email:
            fail(f"no active owner or manager {email}")
        return None
    return await actor_of(row)


def cmd_import(args: argparse.Namespace) -> None:
    from portal.errors import Invalid, NotFound
    from portal.imports import reading, values
    from portal.imports import service as imports
    from portal.locations.tables import Location

    try:
        sheet = reading.open_sheet(args.file)
    except FileNotFoundError:
        fail(f"no file {args.file}")
    except reading.FileProblem as exc:
        fail(str(exc))
    bar = ProgressBar() if sys.stderr.isatty() else None
    find_mapping = _import_mapping(args.kind, args.mapping, sheet.headers)

    async def run() -> imports.Summary:
        await _require_migrated()
        location = (
            await Location.select(Location.id).where(Location.slug == args.location).first().run()
        )
        if location is None:
            fail(f"no location {args.location!r}")
        mapping = await find_mapping()
        actor = await _import_actor(args.by)
        with progress.listening(bar) if bar is not None else contextlib.nullcontext():
            return await imports.run_import(
                args.kind, sheet, location_id=int(location["id"]), mapping=mapping, actor=actor,
                order=args.date_order, dry_run=args.dry_run, filename=args.file.name,
            )  # fmt: skip

    from portal import progress

    try:
        summary = asyncio.run(_with_database(run))
    except values.AmbiguousDates as exc:
        fail(f"{exc} Give --date-order dmy or --date-order mdy.")
    except (ValueError, reading.FileProblem) as exc:
        fail(str(exc))
    except Invalid as exc:
        fail("; ".join(f"{k}: {v}" for k, v in exc.errors.items()))
    except NotFound as exc:
        fail(str(exc.detail))
    finally:
        if bar is not None:
            bar.close()
    what = "would be" if args.dry_run else "were"
    print(
        f"{summary.total} row(s): {summary.created} {what} created, {summary.matched} matched "
        f"(nothing new), {summary.rejected} rejected."
        + ("" if args.dry_run else f" Batch {summary.batch_id}.")
    )
    if summary.kind == "clients":
        print(f"Merge rule: {summary.merge_rule}")
    if summary.rejected:
        report = args.report or args.file.with_name(args.file.stem + ".rejected.csv")
        imports.write_rejected(report, summary.failures, summary.columns)
        print(f"Rejected rows and their reasons: {report}")
        raise SystemExit(3)


def cmd_export(args: argparse.Namespace) -> None:
    from portal import progress
    from portal.exports import service as exports

    out = Path(args.out)
    if out.suffix.lower() != ".zip":
        fail("--out must name a .zip file")
    if not out.parent.is_dir():
        fail(f"no such folder: {out.parent}")
    settings = get_settings()
    bar = ProgressBar() if sys.stderr.isatty() else None

    async def run() -> Any:
        await _require_migrated()
        if bar is None:
            return await exports.export_to(settings, out, notes_included=args.notes)
        with progress.listening(bar):
            return await exports.export_to(settings, out, notes_included=args.notes)

    try:
        written = asyncio.run(_with_database(run))
    finally:
        if bar is not None:
            bar.close()
    print(f"Wrote {out}: {exports.summary(written, args.notes)}")


def _backup_step(step: Callable[..., Coroutine[Any, Any, Any]], args: argparse.Namespace) -> Any:
    """``backup.backup`` or ``backup.restore`` on the configured database and ``args.file``:
    its outcome, its notes on stderr; a ``BackupError`` ends the command with its status."""
    from portal.backup import BackupError

    try:
        outcome = asyncio.run(step(get_settings().database_url, args.file, force=args.force))
    except BackupError as exc:
        fail(exc.message, exc.status)
    for note in outcome.notes:
        print(f"portal: note: {note}", file=sys.stderr)
    return outcome


def cmd_backup(args: argparse.Namespace) -> None:
    from portal import backup

    outcome = _backup_step(backup.backup, args)
    print(f"Backed up the {outcome.engine} database to {outcome.path} ({outcome.size:,} bytes).")


def cmd_restore(args: argparse.Namespace) -> None:
    from portal import backup
    from portal.migrate import pending_migrations

    outcome = _backup_step(backup.restore, args)
    print(f"Restored the {outcome.engine} database from {args.file}.")
    pending = asyncio.run(_with_database(pending_migrations))
    if pending:
        print(f"{len(pending)} migration(s) newer than the backup: run `portal migrate`.")
    else:
        print("Every migration is applied.")


Subcommands: TypeAlias = "argparse._SubParsersAction[ArgumentParser]"


def _group(sub: Subcommands, name: str, help: str) -> Subcommands:
    """A command that only holds commands (``portal users …``); its choice is
    ``<name>_command``, which argparse names when it is missing."""
    return sub.add_parser(name, help=help).add_subparsers(
        dest=f"{name}_command", required=True, parser_class=ArgumentParser
    )


def _command(
    sub: Subcommands,
    name: str,
    func: Callable[[argparse.Namespace], None],
    help: str,
    description: str | None = None,
) -> ArgumentParser:
    """A command that runs ``func``; the caller adds its arguments."""
    command = sub.add_parser(name, help=help, description=description)
    command.set_defaults(func=func)
    return command


def build_parser() -> ArgumentParser:
    from portal.auth.service import ROLES

    parser = ArgumentParser(prog="portal", description="Clinic Portal")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    serve = _command(sub, "serve", cmd_serve, "serve the portal over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default $PORT or 8000")
    serve.add_argument("--workers", type=int, default=1)

    _command(
        sub, "worker", cmd_worker,
        "run the scheduled and queued jobs (PostgreSQL; run one or more)",
        "Runs the jobs' schedules and the runs owners queue from the jobs page. "
        "Any number of workers share the database: each schedule runs once, a job whose "
        "worker died is run again by another. Stops gracefully on SIGINT/SIGTERM.",
    )  # fmt: skip

    jobs = _group(sub, "jobs", "the scheduled jobs")
    _command(jobs, "list", cmd_jobs_list, "each job's schedule, last run and next run")
    _command(
        jobs, "run", cmd_jobs_run,
        "run one job now, in this process, with a progress bar on a terminal",
        "Recorded like any run (the jobs page shows it). Exit status: 0 done, "
        "1 failed, 2 bad arguments, 3 finished with something for a person to settle.",
    ).add_argument("job", help="its name, as `portal jobs list` shows it")  # fmt: skip

    export = _command(
        sub, "export", cmd_export,
        "write the whole chain's data as CSV files in one ZIP, with a progress bar on a terminal",
        "clients, balances, upcoming appointments and therapists in the import's layouts, "
        "plus sales, payments, refunds, appointments and intakes; treatment notes only with "
        "--notes. Audited.",
    )  # fmt: skip
    export.add_argument("--out", required=True, metavar="FILE.zip")
    export.add_argument("--notes", action="store_true", help="include treatment notes")

    _command(sub, "migrate", cmd_migrate, "apply pending database migrations")
    _command(sub, "demo", cmd_demo, "load demo locations, staff and accounts").add_argument(
        "--if-empty", action="store_true", help="only when the database is empty"
    )

    users = _group(sub, "users", "manage accounts")
    create = _command(users, "create", cmd_users_create, "create an account")
    create.add_argument("--email", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", default="")
    create.add_argument("--location", action="append", metavar="SLUG", help="repeatable")
    create.add_argument("--password-stdin", action="store_true")
    set_password = _command(
        users, "set-password", cmd_users_set_password, "set an account's password"
    )
    set_password.add_argument("--email", required=True)
    set_password.add_argument("--password-stdin", action="store_true")
    _command(users, "deactivate", cmd_users_deactivate, "deactivate an account").add_argument(
        "--email", required=True
    )
    _command(
        users, "reset-2fa", cmd_users_reset_2fa,
        "remove an account's passkeys, authenticator app and recovery codes",
        "For a member (an owner too) who lost every second factor: removes them, "
        "ends the account's sessions and emails the account. Audited.",
    ).add_argument("--email", required=True)  # fmt: skip

    stripe = _group(sub, "stripe", "Stripe payments")
    reconcile = _command(
        stripe, "reconcile", cmd_stripe_reconcile,
        "record the payments, fees and refunds Stripe has and the portal missed",
        "Lists Stripe's payments and refunds created in the window (UTC days, "
        "both included), records what the portal missed, and prints a summary. Exit status: "
        "0 done, 1 Stripe unreachable, 2 bad arguments, 3 mismatches left to settle by hand.",
    )  # fmt: skip
    reconcile.add_argument("--since", required=True, type=_day, metavar="YYYY-MM-DD")
    reconcile.add_argument(
        "--until", type=_day, default=None, metavar="YYYY-MM-DD", help="default: now"
    )
    _command(
        stripe, "payouts", cmd_stripe_payouts,
        "import Stripe's payouts and what each contained (safe to run from cron)",
        "Lists Stripe's payouts arriving on or after --since (default: 30 days "
        "ago), imports the ones the portal missed or whose status changed, with their "
        "contents, and journals them. Exit status: 0 done, 1 Stripe unreachable, 2 bad "
        "arguments, 3 a payout whose contents do not add up to its amount.",
    ).add_argument("--since", type=_day, default=None, metavar="YYYY-MM-DD")  # fmt: skip

    _command(
        _group(sub, "sales", "sold packages"), "expire", cmd_sales_expire,
        "expire unused sessions of packages past their validity (safe to run from cron)",
    )  # fmt: skip
    _command(
        _group(sub, "memberships", "clients' memberships"), "arrears", cmd_memberships_arrears,
        "stop bookings with the sessions of memberships past their grace period "
        "(safe to run from cron)",
    )  # fmt: skip
    _command(
        _group(sub, "packages", "clients' session packages"), "expire", cmd_packages_expire,
        "end packages past their validity: release their future bookings, expire "
        "unused sessions, record breakage (nightly; safe to repeat)",
        "Cancels future bookings that hold a session of an expired package "
        "(the client is emailed), then expires every unused session of expired packages and "
        "journals the breakage. A second run changes nothing.",
    )  # fmt: skip

    reports = _group(sub, "reports", "the reports' daily totals")
    _command(
        reports, "rebuild", cmd_reports_rebuild,
        "recompute the daily totals from the journal and the rows (safe while serving)",
        "One local month at a time (every location), each in its own short "
        "transaction. Progress is shown on a terminal.",
    ).add_argument(
        "--since", type=_day, default=None, metavar="YYYY-MM-DD", help="from this local day on"
    )  # fmt: skip
    _command(
        reports, "verify", cmd_reports_verify,
        "compare the daily totals with a fresh aggregation of the rows",
        "Prints every difference. Exit status: 0 equal, 1 a difference.",
    )  # fmt: skip

    _command(
        _group(sub, "reminders", "appointment reminders"), "send", cmd_reminders_send,
        "email a reminder for every booked appointment starting tomorrow (clinic time)",
        "Run daily or hourly from cron: each appointment is reminded once. Exit "
        "status 1 when a delivery failed (it is tried again on the next run).",
    )  # fmt: skip

    import_cmd = _command(
        sub, "import", cmd_import,
        "import clients, remaining balances, upcoming appointments or therapists from a CSV "
        "or XLSX file into a location",
        "Reads CSV (UTF-8 or Windows-1252, `,` or `;`) or XLSX up to 50 MB; the columns "
        "are guessed from the header unless --mapping names a saved mapping or a JSON file. "
        "The same file again creates nothing new. Exit status: 0 all imported (or matched), "
        "2 bad arguments or file, 3 some rows rejected (their reasons written to --report, "
        "default FILE.rejected.csv).",
    )  # fmt: skip
    import_cmd.add_argument("kind", choices=("clients", "balances", "appointments", "therapists"))
    import_cmd.add_argument("file", type=Path, metavar="FILE")
    import_cmd.add_argument("--location", required=True, metavar="SLUG")
    import_cmd.add_argument("--mapping", metavar="NAME|FILE")
    import_cmd.add_argument("--dry-run", action="store_true", help="count, change nothing")
    import_cmd.add_argument("--date-order", choices=("dmy", "mdy"), default=None)
    import_cmd.add_argument("--report", type=Path, default=None, metavar="CSV")
    import_cmd.add_argument(
        "--by", metavar="EMAIL", default=None,
        help="the owner or manager the import is recorded as (default: the first owner)",
    )  # fmt: skip

    backup_cmd = _command(
        sub, "backup", cmd_backup,
        "write a backup of the whole database to FILE (safe while the portal runs)",
        "SQLite: the online backup API, one consistent snapshot. PostgreSQL: "
        "pg_dump --format=custom. Exit status: 0 done, 1 failed, 2 bad arguments.",
    )  # fmt: skip
    backup_cmd.add_argument("file", type=Path, metavar="FILE")
    backup_cmd.add_argument("--force", action="store_true", help="replace FILE if it exists")
    restore_cmd = _command(
        sub, "restore", cmd_restore,
        "replace the database with the backup in FILE (stop the portal first)",
        "Refuses to replace a database that holds anything unless --force. "
        "PostgreSQL: pg_restore --clean --if-exists --no-owner in one transaction. "
        "Exit status: 0 done, 1 failed, 2 bad arguments.",
    )  # fmt: skip
    restore_cmd.add_argument("file", type=Path, metavar="FILE")
    restore_cmd.add_argument(
        "--force", action="store_true", help="replace the database's current contents"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ConfigurationError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
