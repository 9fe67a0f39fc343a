"""The portal's scheduled jobs: what each does, and when.

Each job calls the same service function as its CLI verb (``portal packages
expire``, ``portal reminders send``, ``portal stripe payouts``, ``portal
stripe reconcile``, ``portal memberships arrears``), so a manual run and a
scheduled one cannot drift apart. Every job is idempotent — a second run, or a
run retried after its worker died mid-way, changes nothing the first one did —
which is what lets the worker retry them freely.

Schedules are cron lines in UTC (minute hour day month weekday), changed with
``JOB_SCHEDULE_<NAME>`` (``JOB_SCHEDULE_REMINDERS="*/30 * * * *"``, or
``off``). Package expiry is the exception: its hourly tick runs the locations
whose own clock has reached ``PACKAGE_EXPIRY_HOUR`` (03:00 by default), so each
location's packages end at its night whatever its time zone and daylight
saving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from portal import contexts, progress
from portal.auth import service as auth
from portal.bookings import expiry, notify
from portal.clients import accounts
from portal.email import service as email
from portal.imports import service as imports
from portal.jobs.runs import JobCall, JobFunction, JobResult
from portal.locations.tables import Location
from portal.memberships import desk, subscriptions
from portal.money import format_money
from portal.payments import abandon, payouts, reconcile
from portal.payments.gateway import StripeGateway
from portal.settings import ConfigurationError, Settings

OFF = "off"


@dataclass(frozen=True)
class JobSpec:
    name: str
    label: str
    description: str  # what it does and when, for the jobs page and the README
    default_cron: str
    function: JobFunction
    # When the cron tick does not mean "run now" (package expiry): which ticks
    # run, and the next run to show.
    due: Callable[[JobCall], Awaitable[bool]] | None = None
    next_run: Callable[[Settings, datetime], Awaitable[datetime | None]] | None = None


# -- package expiry: each location at its own 03:00 --------------------------------


async def _zones() -> dict[int, str]:
    rows = await Location.select(Location.id, Location.timezone).run()
    return {int(r["id"]): str(r["timezone"]) for r in rows}


async def locations_at_hour(at: datetime, hour: int) -> list[int]:
    """The locations whose own clock shows ``hour`` at the instant ``at``."""
    return sorted(
        location_id
        for location_id, zone in (await _zones()).items()
        if at.astimezone(ZoneInfo(zone)).hour == hour
    )


async def _expiry_due(call: JobCall) -> bool:
    if call.scheduled_for is None:
        return True
    return bool(await locations_at_hour(call.scheduled_for, call.settings.package_expiry_hour))


async def _expiry_next(settings: Settings, now: datetime) -> datetime | None:
    """The next hourly tick at which some location's clock shows the expiry hour."""
    zones = set((await _zones()).values())
    if not zones:
        return None
    tick = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for _ in range(48):
        if any(tick.astimezone(ZoneInfo(z)).hour == settings.package_expiry_hour for z in zones):
            return tick
        tick += timedelta(hours=1)
    return None


async def expire_packages(call: JobCall) -> JobResult:
    location_ids = (
        None
        if call.scheduled_for is None
        else await locations_at_hour(call.scheduled_for, call.settings.package_expiry_hour)
    )
    result = await expiry.expire_packages(settings=call.settings, location_ids=location_ids)
    where = "every location" if location_ids is None else f"{len(location_ids)} location(s)"
    if not result.changed_anything:
        return JobResult(f"{where.capitalize()}: no package had expired; nothing changed.")
    breakage = ", ".join(format_money(v, c) for c, v in sorted(result.expiry.value_cents.items()))
    return JobResult(
        f"{where.capitalize()}: released {len(result.released)} future booking(s); expired "
        f"{result.expiry.sessions} unused session(s) of {result.expiry.sales} package(s)"
        + (f"; breakage {breakage}." if breakage else ".")
    )


# -- the others ---------------------------------------------------------------------


async def send_reminders(call: JobCall) -> JobResult:
    result = await notify.send_reminders(settings=call.settings)
    summary = (
        f"Reminders: {result.sent} sent, {result.skipped} skipped (switched off), "
        f"{result.failed} failed."
    )
    if result.failed:
        return JobResult(
            summary,
            attention=f"{result.failed} reminder(s) could not be delivered; the next run "
            "tries them again.",
        )
    return JobResult(summary)


PAYOUTS_LOOKBACK_DAYS = 30
RECONCILE_LOOKBACK_DAYS = 3


async def import_payouts(call: JobCall) -> JobResult:
    gateway = StripeGateway.from_settings(call.settings)
    try:
        since = datetime.now(tz=UTC).date() - timedelta(days=PAYOUTS_LOOKBACK_DAYS)
        await progress.report(0, 1, "Reading Stripe's payouts")
        result = await payouts.import_payouts(gateway, since)
    finally:
        await gateway.aclose()
    summary = "\n".join(result.lines())
    if result.mismatches:
        return JobResult(summary, attention="; ".join(result.mismatches))
    return JobResult(summary)


async def reconcile_stripe(call: JobCall) -> JobResult:
    gateway = StripeGateway.from_settings(call.settings)
    now = datetime.now(tz=UTC).replace(microsecond=0)
    since = datetime.combine(
        now.date() - timedelta(days=RECONCILE_LOOKBACK_DAYS), datetime.min.time(), tzinfo=UTC
    )
    try:
        await progress.report(0, 1, "Reading Stripe's payments and refunds")
        report = await reconcile.reconcile(gateway, since, now + timedelta(minutes=1))
    finally:
        await gateway.aclose()
    summary = "\n".join(report.lines())
    if report.mismatches:
        return JobResult(summary, attention=f"{len(report.mismatches)} mismatch(es) to settle.")
    return JobResult(summary)


async def run_imports(call: JobCall) -> JobResult:
    summaries = await imports.run_queued()
    if not summaries:
        return JobResult("No import was waiting.")
    return JobResult(
        "\n".join(
            f"Batch {s.batch_id} ({s.kind}): {s.created} created, {s.matched} matched, "
            f"{s.rejected} rejected."
            for s in summaries
        )
    )


async def expire_abandoned_orders(call: JobCall) -> JobResult:
    gateway = StripeGateway.from_settings(call.settings)
    try:
        await progress.report(0, 1, "Closing card orders nobody paid")
        result = await abandon.expire_abandoned(gateway)
    finally:
        await gateway.aclose()
    summary = (
        f"Expired {result.expired} unpaid card order(s); {result.paid} found paid in Stripe "
        "(their payment is recorded by its webhook)."
    )
    if result.failed:
        return JobResult(
            summary,
            attention=f"Stripe could not be asked about {result.failed} order(s); "
            "the next run tries them again.",
        )
    return JobResult(summary)


async def purge_expired(call: JobCall) -> JobResult:
    await progress.report(0, 2, "Sessions and sign-in attempts")
    sessions = await auth.purge_expired(call.settings)
    await progress.report(1, 2, "Reset and sign-up links")
    links = await accounts.purge_expired()
    await progress.report(2, 2, "Done")
    return JobResult(
        f"Deleted {sessions} expired session(s), {links.password_resets} password-reset "
        f"link(s), {links.signups} sign-up link(s) and {links.requests} old request count(s)."
    )


async def enforce_arrears(call: JobCall) -> JobResult:
    fell_due = await desk.fall_due()
    reminded = await subscriptions.remind_grace_ending()
    frozen = await subscriptions.enforce_arrears()
    if fell_due and not frozen:
        return JobResult(f"{len(fell_due)} front-desk member(s) now owe their next period.")
    if reminded and not frozen:
        return JobResult(f"{len(reminded)} member(s) in arrears reminded before the grace ends.")
    if not frozen:
        return JobResult("No membership is past its grace period with bookable sessions.")
    return JobResult(f"Sessions of {len(frozen)} membership(s) in arrears can no longer be booked.")


async def deliver_outbox(call: JobCall) -> JobResult:
    result = await email.deliver_due(settings=call.settings)
    if result.interrupted or result.gave_up:
        return JobResult(result.summary(), attention="Some messages need a look in the outbox.")
    return JobResult(result.summary())


JOBS: tuple[JobSpec, ...] = (
    JobSpec(
        name="expire_packages",
        label="Expire packages",
        description="Ends packages past their validity (releases their future bookings, "
        "expires unused sessions, records breakage), nightly at each location's 03:00.",
        default_cron="0 * * * *",
        function=expire_packages,
        due=_expiry_due,
        next_run=_expiry_next,
    ),
    JobSpec(
        name="reminders",
        label="Appointment reminders",
        description="Emails a reminder for each appointment starting tomorrow; hourly.",
        default_cron="5 * * * *",
        function=send_reminders,
    ),
    JobSpec(
        name="stripe_payouts",
        label="Import Stripe payouts",
        description="Imports Stripe's payouts of the last 30 days and their contents, "
        "and journals them; daily.",
        default_cron="30 4 * * *",
        function=import_payouts,
    ),
    JobSpec(
        name="stripe_reconcile",
        label="Reconcile with Stripe",
        description="Records the payments, fees and refunds of the last 3 days that Stripe "
        "has and the portal missed; daily.",
        default_cron="45 4 * * *",
        function=reconcile_stripe,
    ),
    JobSpec(
        name="abandoned_orders",
        label="Expire unpaid card orders",
        description="Cancels card orders still unpaid 24 hours after they started (their "
        "Stripe Checkout closed, a declined card's payment cancelled); hourly.",
        default_cron="40 * * * *",
        function=expire_abandoned_orders,
    ),
    JobSpec(
        name="purge",
        label="Purge expired sign-in data",
        description="Deletes expired sessions, sign-in and reset links, and sign-in "
        "attempts older than 30 days; daily.",
        default_cron="15 2 * * *",
        function=purge_expired,
    ),
    JobSpec(
        name="membership_arrears",
        label="Memberships in arrears",
        description="Reminds members whose failed renewal's 7-day grace period ends within "
        "2 days, and stops bookings with the sessions of those past it (paying the invoice "
        "lifts it); hourly.",
        default_cron="20 * * * *",
        function=enforce_arrears,
    ),
    JobSpec(
        name="outbox",
        label="Deliver email",
        description="Sends email still waiting in the outbox and retries failed deliveries "
        "(after 2, 4, 8, 16, 32 minutes); every minute, when SMTP is configured.",
        default_cron="* * * * *",
        function=deliver_outbox,
    ),
    JobSpec(
        name="imports",
        label="Import files",
        description="Runs the imports owners and managers confirmed in the import wizard "
        "(clients, balances, appointments, therapists), each with its progress; queued by "
        "the wizard, and every 10 minutes for any still waiting.",
        default_cron="*/10 * * * *",
        function=run_imports,
    ),
)

BY_NAME = {spec.name: spec for spec in JOBS}


def requested() -> tuple[JobSpec, ...]:
    """Jobs without a schedule that run when someone asks, with parameters of their own
    (an owner's data export): declared by contexts above this one (``contexts.requested_jobs``)."""
    return tuple(contexts.requested_jobs())


def find(name: str) -> JobSpec | None:
    spec = BY_NAME.get(name)
    if spec is None:
        spec = next((s for s in requested() if s.name == name), None)
    return spec


def schedule_of(spec: JobSpec, settings: Settings) -> str | None:
    """The job's cron line (the setting's, else the default), or None when switched off."""
    if spec.name not in BY_NAME:
        return None  # a requested job has no schedule
    cron = dict(settings.job_schedules).get(spec.name, spec.default_cron).strip()
    if cron.lower() == OFF:
        return None
    if not croniter.is_valid(cron):
        raise ConfigurationError(
            f"JOB_SCHEDULE_{spec.name.upper()} is not a cron line (minute hour day month "
            f"weekday, in UTC) nor 'off': {cron!r}"
        )
    return cron


# The queue's own upkeep (portal.jobs.queue), not shown on the jobs page: how
# often a worker looks for jobs whose worker went silent.
RETRY_STALLED = "retry_stalled"
HOUSEKEEPING_CRON = {RETRY_STALLED: "* * * * *"}


def housekeeping_schedule(name: str, settings: Settings) -> str:
    cron = dict(settings.job_schedules).get(name, HOUSEKEEPING_CRON[name]).strip()
    if not croniter.is_valid(cron):
        raise ConfigurationError(f"JOB_SCHEDULE_{name.upper()} is not a cron line: {cron!r}")
    return cron


def check_schedules(settings: Settings) -> None:
    """Refuse to start on a schedule that names no job or is not a cron line."""
    for name, _value in settings.job_schedules:
        if name in HOUSEKEEPING_CRON:
            housekeeping_schedule(name, settings)
        elif name not in BY_NAME:
            raise ConfigurationError(
                f"JOB_SCHEDULE_{name.upper()} names no job; the jobs are "
                + ", ".join(spec.name for spec in JOBS)
            )
    for spec in JOBS:
        schedule_of(spec, settings)


async def next_run(spec: JobSpec, settings: Settings, now: datetime) -> datetime | None:
    cron = schedule_of(spec, settings)
    if cron is None:
        return None
    if spec.next_run is not None:
        return await spec.next_run(settings, now)
    nxt: datetime = croniter(cron, now.astimezone(UTC)).get_next(datetime)
    return nxt
