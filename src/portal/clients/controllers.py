from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template
from litestar.types import ExceptionHandlersMap

from portal import db
from portal.auth.controllers import browser_of
from portal.auth.service import CLIENT, MANAGER, OWNER, Throttled
from portal.clients import accounts, html, intake, regions, service
from portal.email.controllers import deliver_later
from portal.errors import NotFound
from portal.locations.service import all_locations, viewer_zone
from portal.settings import Settings
from portal.web.admin import history_page, reverse, reverser
from portal.web.deps import (
    Actor,
    Arrival,
    Arriving,
    LocatedParams,
    SignedIn,
    Visitor,
)
from portal.web.forms import ValidationFailed, checked, parse_id, read_form
from portal.web.guards import requires_owner, requires_role
from portal.web.responses import redirect, safe_next, set_session_cookie

PUBLIC = {"public": True}
clients_only = requires_role(CLIENT)
staff_readers = requires_role(OWNER, MANAGER)


def _home(role: str) -> str:
    return "/account" if role == CLIENT else "/"


def _throttled_message(exc: Throttled) -> str:
    return (
        "Too many requests from here. "
        f"Try again in {exc.minutes} minute{'s' if exc.minutes != 1 else ''}."
    )


def _version_param(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise NotFound("No such version of the intake.") from exc


def _signup_input(values: dict[str, str]) -> tuple[dict[str, str], accounts.SignupInput]:
    """The sign-up form: what the page shows again (no passwords) and what the service gets."""
    form = {
        "name": values.get("name", ""),
        "email": values.get("email", ""),
        "consent": values.get("consent", ""),
    }
    data = accounts.SignupInput(
        name=values.get("name", ""),
        email=values.get("email", ""),
        password=values.get("password", ""),
        confirm_password=values.get("confirm_password", ""),
        consent=checked(values, "consent"),
    )
    return form, data


def _link_sent(
    response: Response[Any],
    send: Callable[..., Awaitable[Any]],
    settings: Settings,
    accepted: Any,
    address: str,
) -> Response[Any]:
    """The same answer, after the same work, whether or not an account has this
    address: the lookup, the link (or the notice to the owner) come afterwards."""
    response.background = BackgroundTask(
        send,
        settings,
        accepted,
        address=address,
        defer=False,  # delivered through SMTP, when there is one, right there
    )
    return response


def _signed_in(arrival: Arriving, url: str, message: str, token: str) -> Response[Any]:
    response = redirect(arrival.request, url, message)
    set_session_cookie(response, arrival.settings, token)
    return response


def _throttled_page(template: str, context: dict[str, Any], exc: Throttled) -> Response[Any]:
    """The form again with 429 and the Retry-After the throttle asks for."""
    response: Response[Any] = Template(template, context=context, status_code=429)
    response.headers["Retry-After"] = str(exc.retry_after_seconds)
    return response


def _invalid_link(template: str) -> ExceptionHandlersMap:
    """A controller's answer to an unknown, used or expired link, wherever it is found:
    the page saying which, with the status the link earned."""

    def page(_: Request[Any, Any, Any], exc: accounts.ResetLinkInvalid) -> Response[Any]:
        return Template(template, context={"problem": exc}, status_code=exc.status_code)

    return {accounts.ResetLinkInvalid: page}


async def _location_options() -> list[tuple[str, str]]:
    return [(str(loc["id"]), loc["name"]) for loc in await all_locations(active_only=True)]


async def _profile_page(
    template: str,
    client: dict[str, Any],
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
) -> Template:
    """A client's details form (their own, or staff's edit): the stored details, or the
    sent form again with its errors (422)."""
    return Template(
        template,
        context={
            "client": client,
            "form": service.profile_form(client) if form is None else form,
            "errors": errors or {},
            "locations": await _location_options(),
        },
        status_code=422 if errors else 200,
    )


async def _intake_page(client_id: int, version: int | None, tz: str) -> dict[str, Any]:
    """The shown version (latest by default), the list of versions, the zone to show dates in."""
    versions = await service.intake_versions(client_id)
    shown = None
    if version is not None:
        shown = await service.intake_version(client_id, version)
    elif versions:
        shown = await service.current_intake(client_id)
    return {
        "versions": versions,
        "shown": service.present_intake(shown) if shown else None,
        "latest_version": versions[0]["version"] if versions else None,
        "tz": tz,
    }


def _intake_form_context(form: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    return {
        "form": form,
        "errors": errors,
        "labels": intake.LABELS,
        "concerns": intake.CONCERNS,
        "durations": intake.PAIN_DURATIONS,
        "postures": intake.WORK_POSTURES,
        "health_flags": intake.HEALTH_FLAGS,
        "pressures": intake.PRESSURES,
        "region_groups": regions.grouped(),
    }


# -- public: sign-up and password reset ---------------------------------------------


class SignupController(Controller):
    path = ""
    exception_handlers = _invalid_link("clients/signup_invalid.html")

    @get("/signup", opt=PUBLIC, name="signup")
    async def signup_page(
        self,
        user_or_none: Visitor,
        next_url: Annotated[str | None, QueryParameter(name="next")] = None,
    ) -> Response[Any]:
        if user_or_none is not None:
            return Redirect(path=safe_next(next_url, _home(user_or_none.role)), status_code=303)
        form = {"name": "", "email": "", "consent": ""}
        return Template(
            "clients/signup.html",
            context={"form": form, "errors": {}, "next": safe_next(next_url, "")},
        )

    @post("/signup", opt=PUBLIC, name="signup_submit")
    async def signup(self, arrival: Arrival, user_or_none: Visitor) -> Response[Any]:
        request, settings = arrival.request, arrival.settings
        values, _ = await read_form(request)
        next_url = safe_next(values.get("next"), "")
        if user_or_none is not None:
            home = _home(user_or_none.role)
            return redirect(request, next_url or home, "You are already signed in.", "info")
        form, data = _signup_input(values)
        try:
            accepted = await accounts.accept_sign_up(
                settings, data, address=arrival.address, next_url=next_url
            )
        except ValidationFailed as exc:
            return Template(
                "clients/signup.html",
                context={"form": form, "errors": exc.errors, "next": next_url},
                status_code=422,
            )
        except Throttled as exc:
            context = {"form": form, "errors": {"form": _throttled_message(exc)}, "next": next_url}
            return _throttled_page("clients/signup.html", context, exc)
        sent = Redirect(path=reverse(request, "signup_sent"), status_code=303)
        return _link_sent(sent, accounts.send_signup_link, settings, accepted, arrival.address)

    @get("/signup/sent", opt=PUBLIC, name="signup_sent")
    async def sent_page(self) -> Template:
        return Template(
            "clients/signup_sent.html",
            context={"valid_hours": int(accounts.SIGNUP_VALID_FOR.total_seconds() // 3600)},
        )

    @get("/signup/confirm/{token:str}", opt=PUBLIC, name="signup_confirm")
    async def confirm_page(self, token: FromPath[str]) -> Template:
        # Opening the link changes nothing (mail scanners open links too): the
        # page's button does.
        pending = await accounts.check_signup_token(token)
        return Template(
            "clients/signup_confirm.html",
            context={"token": token, "email": pending["email"], "name": pending["name"]},
        )

    @post("/signup/confirm/{token:str}", opt=PUBLIC, name="signup_confirm_submit")
    async def confirm(self, arrival: Arrival, token: FromPath[str]) -> Response[Any]:
        settings = arrival.settings
        signed_in = await accounts.confirm_sign_up(
            settings, token, address=arrival.address, browser=browser_of(arrival.request)
        )
        response = _signed_in(
            arrival, safe_next(signed_in.next_url, "/account"),
            "Welcome! Your account is ready. We have emailed you a copy of the essentials.",
            signed_in.session_token,
        )  # fmt: skip
        deliver_later(response, settings, signed_in.message_id)
        return response


class PasswordResetController(Controller):
    path = "/password"
    exception_handlers = _invalid_link("clients/reset_invalid.html")

    @get("/forgot", opt=PUBLIC, name="password_forgot")
    async def forgot_page(self, sent: Annotated[str, QueryParameter(name="sent")] = "") -> Template:
        return Template(
            "clients/forgot.html",
            context={"form": {"email": ""}, "errors": {}, "sent": sent == "1"},
        )

    @post("/forgot", opt=PUBLIC, name="password_forgot_submit")
    async def forgot(self, arrival: Arrival) -> Response[Any]:
        request, settings = arrival.request, arrival.settings
        values, _ = await read_form(request)
        email = values.get("email", "")
        context: dict[str, Any] = {"form": {"email": email}, "errors": {}, "sent": False}
        if not email:
            context["errors"]["email"] = "Enter the email address of your account."
            return Template("clients/forgot.html", context=context, status_code=422)
        try:
            key = await accounts.accept_reset_request(settings, email, address=arrival.address)
        except Throttled as exc:
            context["errors"]["form"] = _throttled_message(exc)
            return _throttled_page("clients/forgot.html", context, exc)
        # The same answer, after the same work, whether or not an account has this
        # address: the link is looked up, stored and mailed once the answer is out.
        sent = redirect(request, reverse(request, "password_forgot") + "?sent=1")
        return _link_sent(sent, accounts.send_reset_link, settings, key, arrival.address)

    @get("/reset/{token:str}", opt=PUBLIC, name="password_reset")
    async def reset_page(self, token: FromPath[str]) -> Template:
        reset = await accounts.check_reset_token(token)
        return Template(
            "clients/reset.html",
            context={"token": token, "email": reset["email"], "errors": {}},
        )

    @post("/reset/{token:str}", opt=PUBLIC, name="password_reset_submit")
    async def reset(self, arrival: Arrival, token: FromPath[str]) -> Response[Any]:
        values, _ = await read_form(arrival.request)
        try:
            signed_in = await accounts.reset_password(
                arrival.settings,
                token,
                values.get("password", ""),
                values.get("confirm_password", ""),
                address=arrival.address,
                browser=browser_of(arrival.request),
            )
        except ValidationFailed as exc:
            reset = await accounts.check_reset_token(token)
            context = {"token": token, "email": reset["email"], "errors": exc.errors}
            return Template("clients/reset.html", context=context, status_code=422)
        return _signed_in(
            arrival, _home(signed_in.role),
            "Your password has been changed and you are signed in. Other devices were signed out.",
            signed_in.session_token,
        )  # fmt: skip


# -- the client's own pages -------------------------------------------------------------


class AccountController(Controller):
    path = "/account"
    guards = [clients_only]

    @get("/", name="account")
    async def index(self, user: SignedIn) -> Template:
        from portal.bookings.account import account_context  # bookings build on clients

        return Template("clients/account.html", context=await account_context(user.id))

    @get("/profile", name="account_profile")
    async def profile_form(self, user: SignedIn) -> Template:
        client = await service.get_client(user.id)
        return await _profile_page("clients/profile_form.html", client)

    @post("/profile", name="account_profile_save")
    async def save_profile(self, acting: Actor) -> Response[Any]:
        request, user = acting.request, acting.user
        client = await service.get_client(user.id)
        values, _ = await read_form(request)
        try:
            data = await service.parse_profile_form(values)
            await service.save_profile(user, user.id, data, address=acting.address)
        except ValidationFailed as exc:
            return await _profile_page("clients/profile_form.html", client, values, exc.errors)
        return redirect(request, reverse(request, "account"), "Your details were saved.")

    @get("/intake", name="account_intake")
    async def intake_view(
        self,
        user: SignedIn,
        version: Annotated[str | None, QueryParameter(name="version")] = None,
    ) -> Template:
        client = await service.get_client(user.id)
        context = await _intake_page(user.id, _version_param(version), client["timezone"])
        return Template("clients/intake.html", context=context)

    @get("/intake/edit", name="account_intake_form")
    async def intake_form(self, user: SignedIn) -> Template:
        latest = await service.current_intake(user.id)
        context = _intake_form_context(intake.as_form(latest), {})
        context["latest_version"] = latest["version"] if latest else None
        return Template("clients/intake_form.html", context=context)

    @post("/intake/edit", name="account_intake_save")
    async def intake_save(self, acting: Actor) -> Response[Any]:
        request, user = acting.request, acting.user
        values, multi = await read_form(request)
        try:
            data = intake.parse_intake(values, multi)
        except ValidationFailed as exc:
            latest = await service.current_intake(user.id)
            context = _intake_form_context(intake.form_from_submission(values, multi), exc.errors)
            context["latest_version"] = latest["version"] if latest else None
            return Template("clients/intake_form.html", context=context, status_code=422)
        version = await service.save_intake(user, user.id, data, address=acting.address)
        message = (
            "Thank you — your intake was saved. Your therapist will read it before your session."
            if version == 1
            else f"Your intake was updated (version {version}). Earlier versions are kept."
        )
        return redirect(request, reverse(request, "account_intake"), message)


# -- staff --------------------------------------------------------------------------------


class ClientStaffController(Controller):
    path = "/clients"
    guards = [staff_readers]

    @get("/", name="clients")
    async def index(
        self,
        request: Request[Any, Any, Any],
        user: SignedIn,
        located_query: LocatedParams,
        intake_status: Annotated[str, QueryParameter(name="intake")] = "",
    ) -> Template:
        query, status = located_query, located_query.status or "active"
        page, locations, zone = await db.concurrently(
            service.list_clients(
                user,
                search=query.search[:120],
                status=status,
                location_id=parse_id(query.location),
                intake=intake_status,
                after=query.after,
            ),
            _location_options(),
            viewer_zone(user),  # the intake dates of clients without a preferred location
        )
        return Template(
            "clients/staff/list.html",
            context={
                "page": page,
                "q": query.q,
                "status": status,
                "location": query.location,
                "intake_status": intake_status,
                "locations": locations,
                "rows": html.client_rows(
                    page.rows, zone, reverser(request, "client_detail", "client_id")
                ),
            },
        )

    @get("/{client_id:int}/edit", name="client_edit")
    async def edit(self, user: SignedIn, client_id: FromPath[int]) -> Template:
        client = await service.get_client_for(user, client_id)
        return await _profile_page("clients/staff/edit.html", client)

    @post("/{client_id:int}/edit", name="client_update")
    async def update(self, acting: Actor, client_id: FromPath[int]) -> Response[Any]:
        request, user = acting.request, acting.user
        client = await service.get_client_for(user, client_id)
        values, _ = await read_form(request)
        try:
            data = await service.parse_profile_form(values)
            changed = await service.save_profile(user, client_id, data, address=acting.address)
        except ValidationFailed as exc:
            return await _profile_page("clients/staff/edit.html", client, values, exc.errors)
        return redirect(
            request,
            reverse(request, "client_detail", client_id=client_id),
            "Client details saved." if changed else "Nothing was changed.",
            "success" if changed else "info",
        )

    @get("/{client_id:int}/intake", name="client_intake")
    async def intake_view(
        self,
        user: SignedIn,
        client_id: FromPath[int],
        version: Annotated[str | None, QueryParameter(name="version")] = None,
    ) -> Template:
        client = await service.get_client_for(user, client_id)
        context = await _intake_page(client_id, _version_param(version), client["timezone"])
        return Template("clients/staff/intake.html", context={"client": client, **context})

    @get("/{client_id:int}/history", guards=[requires_owner], name="client_history")
    async def history(self, user: SignedIn, client_id: FromPath[int]) -> Template:
        client = await service.get_client_for(user, client_id)
        return await history_page(
            "client", client_id, title=f"History of {client['name'] or client['email']}",
            back_url=f"/clients/{client_id}", tz=client["timezone"],
        )  # fmt: skip


ROUTES = [SignupController, PasswordResetController, AccountController, ClientStaffController]
