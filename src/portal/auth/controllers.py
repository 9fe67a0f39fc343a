from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template
from litestar.types import ExceptionHandlersMap

from portal.auth import passkeys, service, tokens, totp, twostep
from portal.identity import ROLE_LABELS, STAFF_ROLES, CurrentUser
from portal.locations.service import viewer_zone
from portal.onetime import service as onetime
from portal.settings import Settings
from portal.web.deps import (
    Address,
    AppSettings,
    Arrival,
    Own,
    OwnAccount,
    SignedIn,
    ViewerZone,
    Visit,
)
from portal.web.forms import ValidationFailed, read_form
from portal.web.guards import requires_owner, requires_role, requires_signed_in
from portal.web.middleware import decode_flashes, encode_flashes
from portal.web.responses import (
    clear_session_cookie,
    portal_cookie,
    redirect,
    safe_next,
    set_session_cookie,
)

PUBLIC = {"public": True}
# Routes a gated user (``CurrentUser.must_enrol``) may reach: enrolment and sign-out.
ENROLMENT = {"enrolment": True}


def _user_agent(request: Request[Any, Any, Any]) -> str:
    return request.headers.get("user-agent", "")


def browser_of(request: Request[Any, Any, Any]) -> service.Browser:
    """The browser signing in here, and the session it holds now (replaced by the new one)."""
    return service.Browser(_user_agent(request), request.state.get("session_token") or None)


def _missing_credentials(email: str, password: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not email:
        errors["email"] = "Enter your email address."
    if not password:
        errors["password"] = "Enter your password."
    return errors


def _try_again(lead: str, exc: service.Throttled) -> str:
    return f"{lead} Try again in {exc.minutes} minute{'s' if exc.minutes != 1 else ''}."


def _retry_after(response: Response[Any], exc: service.Throttled) -> Response[Any]:
    """The answer to a throttled try (429), with the Retry-After the throttle asks for."""
    response.headers["Retry-After"] = str(exc.retry_after_seconds)
    return response


def _throttled_page(
    template: str, context: dict[str, Any], exc: service.Throttled
) -> Response[Any]:
    """The form again with 429 and the Retry-After the throttle asks for."""
    return _retry_after(Template(template, context=context, status_code=429), exc)


async def _after_password(
    request: Request[Any, Any, Any], settings: Settings, token: str, next_url: str
) -> Response[Any]:
    """Signed in with the password: the session, or, for an account with a second
    factor, a pending sign-in instead of this session."""
    pending_token = await twostep.after_password(settings, token, next_url)
    if pending_token is not None:
        response = redirect(request, "/login/two-step")
        _pending_cookie(response, settings, pending_token)
        return response
    response = redirect(request, next_url or "/")
    set_session_cookie(response, settings, token)
    return response


class AuthController(Controller):
    path = ""

    @get("/login", opt=PUBLIC, name="login")
    async def login_page(self, visit: Visit) -> Response[Any]:
        next_url = safe_next(visit.next_url, "")
        context = {"form": {"email": ""}, "errors": {}, "next": next_url}
        return visit.onward() or Template("auth/login.html", context=context)

    @post("/login", opt=PUBLIC, name="login_submit")
    async def login(self, arrival: Arrival) -> Response[Any]:
        values, _ = await read_form(arrival.request)
        email, password = values.get("email", ""), values.get("password", "")
        next_url = safe_next(values.get("next"), "")
        errors = _missing_credentials(email, password)
        context: dict[str, Any] = {"form": {"email": email}, "errors": errors, "next": next_url}
        if errors:
            return Template("auth/login.html", context=context, status_code=422)
        try:
            token = await service.sign_in(
                arrival.settings,
                email,
                password,
                address=arrival.address,
                browser=browser_of(arrival.request),
            )
        except service.Throttled as exc:
            errors["form"] = _try_again("Too many failed sign-in attempts.", exc)
            return _throttled_page("auth/login.html", context, exc)
        except service.InvalidCredentials:
            errors["form"] = "The email or password is not right."
            return Template("auth/login.html", context=context, status_code=401)
        return await _after_password(arrival.request, arrival.settings, token, next_url)

    @post("/logout", guards=[requires_signed_in], name="logout", opt=ENROLMENT)
    async def logout(self, request: Request[Any, Any, Any], settings: AppSettings) -> Response[Any]:
        token = request.state.get("session_token")
        if token:
            await service.end_session(token)
        response = redirect(request, "/login", "You have signed out.", "info")
        clear_session_cookie(response, settings)
        return response

    @get("/account/password", guards=[requires_signed_in], name="password_form")
    async def password_form(self) -> Template:
        return Template("auth/password.html", context={"errors": {}})

    @post("/account/password", guards=[requires_signed_in], name="password_change")
    async def change_password(self, own: Own) -> Response[Any]:
        values, _ = await read_form(own.request)
        if values.get("new_password", "") != values.get("confirm_password", ""):
            errors = {"confirm_password": "The two new passwords differ."}
            return Template("auth/password.html", context={"errors": errors}, status_code=422)
        try:
            token, errors = await service.change_password(
                own.settings,
                own.user,
                values.get("current_password", ""),
                values.get("new_password", ""),
                address=own.address,
                user_agent=_user_agent(own.request),
            )
        except service.Throttled as exc:
            errors = {"form": _try_again("Too many wrong passwords.", exc)}
            return _throttled_page("auth/password.html", {"errors": errors}, exc)
        if errors:
            return Template("auth/password.html", context={"errors": errors}, status_code=422)
        message = "Your password was changed. Other devices have been signed out."
        response = redirect(own.request, "/", message)
        set_session_cookie(response, own.settings, token)
        return response


token_holders = requires_role(*tokens.TOKEN_ROLES)


async def _tokens_page(
    user: CurrentUser,
    *,
    new: str | None = None,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Template:
    """The user's tokens; ``new`` is a token just made, shown this once (only its hash
    is kept). Each rendering's form carries a fresh one-time key."""
    context = {
        "tokens": await tokens.tokens_of(user.id),
        "errors": errors or {},
        "form": {**(form or {}), onetime.FIELD: onetime.new_key()},
        "new": new,
        "tz": await viewer_zone(user),
    }
    return Template("auth/tokens.html", context=context, status_code=status_code)


# The token just made travels from the POST to the page it redirects to in a
# short-lived cookie of that page's path (signed, HttpOnly), read once: reloading
# the page neither shows it again nor makes another.
NEW_TOKEN_COOKIE = "portal_new_token"
TOKENS_PATH = "/account/tokens"


class ApiTokenController(Controller):
    """Personal API tokens for the read-only JSON API."""

    path = TOKENS_PATH
    guards = [token_holders]

    @get("/", name="api_tokens")
    async def index(self, request: Request[Any, Any, Any], user: SignedIn) -> Response[Any]:
        settings: Settings = request.app.state.settings
        shown = decode_flashes(settings.secret_key, request.cookies.get(NEW_TOKEN_COOKIE))
        new = next((value for kind, value in shown if kind == "token"), None)
        response: Response[Any] = await _tokens_page(user, new=new)
        if NEW_TOKEN_COOKIE in request.cookies:
            portal_cookie(response, settings, NEW_TOKEN_COOKIE, "", path=TOKENS_PATH, max_age=0)
        response.headers["Cache-Control"] = "no-store"
        return response

    @post("/", name="api_token_create")
    async def create(
        self, request: Request[Any, Any, Any], user: SignedIn, settings: AppSettings
    ) -> Response[Any]:
        values, _ = await read_form(request)
        try:
            _, token = await tokens.create_token(
                user, values.get("name", ""), request_key=onetime.parse(values.get(onetime.FIELD))
            )
        except ValidationFailed as exc:
            return await _tokens_page(user, form=values, errors=exc.errors, status_code=422)
        if token is None:
            return redirect(request, TOKENS_PATH, "This form was already sent: its token was "
                            "made once and shown then.", "info")  # fmt: skip
        response = redirect(request, TOKENS_PATH, "Token created.")
        secret = encode_flashes(settings.secret_key, [("token", token)])
        portal_cookie(response, settings, NEW_TOKEN_COOKIE, secret, path=TOKENS_PATH, max_age=120)
        return response

    @post("/{token_id:int}/revoke", name="api_token_revoke")
    async def revoke(
        self, request: Request[Any, Any, Any], user: SignedIn, token_id: FromPath[int]
    ) -> Response[Any]:
        """Asks first (the confirm page's button sends ``confirmed``), then revokes."""
        values, _ = await read_form(request)
        if values.get("confirmed") != "1":
            token = await tokens.live_token_of(user, token_id)
            if token is None:
                raise NotFoundException("No such token.")
            return Template("auth/token_revoke.html", context={"token": token})
        if not await tokens.revoke(user, token_id):
            raise NotFoundException("No such token.")
        return redirect(request, TOKENS_PATH, "Token revoked; it no longer works.", "info")


# -- two-step sign-in ----------------------------------------------------------------

PENDING_COOKIE = "portal_pending"
_NO_PENDING = "Your sign-in has expired. Please sign in again."
_SEND_JSON = "Send the passkey's answer as JSON."


def _pending_cookie(response: Response[Any], settings: Settings, token: str) -> None:
    """The pending sign-in's cookie: only sent to /login… and gone in ten minutes; an
    empty token forgets it."""
    max_age = twostep.PENDING_MINUTES * 60 if token else 0
    portal_cookie(response, settings, PENDING_COOKIE, token, path="/login", max_age=max_age)


def _json(content: dict[str, Any], status_code: int = 200) -> Response[Any]:
    return Response(content=content, status_code=status_code, media_type=MediaType.JSON)


def _json_error(message: str, status_code: int) -> Response[Any]:
    return _json({"error": message}, status_code)


def _refused(exc: ValidationFailed, status_code: int) -> Response[Any]:
    """A passkey ceremony the service refused: its first message as the JSON error."""
    return _json_error(next(iter(exc.errors.values())), status_code)


class _NotJson(Exception):
    """The body is not the JSON object static/passkeys.js posts."""


async def _read_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The JSON object posted by static/passkeys.js; anything else is refused (400,
    ``_SEND_JSON``) by the passkey controllers' :data:`JSON_REFUSED`."""
    if "json" not in request.headers.get("content-type", ""):
        raise _NotJson
    try:
        data = await request.json()
    except Exception as exc:
        raise _NotJson from exc
    if not isinstance(data, dict):
        raise _NotJson
    return data


def _not_json(_request: Request[Any, Any, Any], _exc: _NotJson) -> Response[Any]:
    return _json_error(_SEND_JSON, 400)


JSON_REFUSED: ExceptionHandlersMap = {_NotJson: _not_json}


def _text(data: dict[str, Any], key: str, limit: int = 200) -> str:
    value = data.get(key)
    return value[:limit] if isinstance(value, str) else ""


async def _pending(request: Request[Any, Any, Any]) -> twostep.Pending | None:
    return await twostep.pending(request.cookies.get(PENDING_COOKIE, ""))


def _signed_in(response: Response[Any], settings: Settings, token: str) -> Response[Any]:
    set_session_cookie(response, settings, token)
    _pending_cookie(response, settings, "")
    return response


async def _two_step_page(
    step: twostep.Pending, errors: dict[str, str], status_code: int = 200
) -> Template:
    factors = await twostep.factors_of(step.user_id)
    return Template(
        "auth/two_step.html",
        context={"factors": factors, "errors": errors, "email": step.email},
        status_code=status_code,
    )


class TwoStepSignInController(Controller):
    """The second step after the password: an authenticator code, a recovery code or a
    passkey. Public routes: the pending sign-in is not a session; its own cookie says who."""

    path = "/login/two-step"
    opt = PUBLIC
    exception_handlers = JSON_REFUSED

    @get("/", opt=PUBLIC, name="two_step_form")
    async def form(self, request: Request[Any, Any, Any]) -> Response[Any]:
        step = await _pending(request)
        if step is None:
            return redirect(request, "/login", _NO_PENDING, "info")
        return await _two_step_page(step, {})

    @post("/", opt=PUBLIC, name="two_step_submit")
    async def submit(self, arrival: Arrival) -> Response[Any]:
        step = await _pending(arrival.request)
        if step is None:
            return redirect(arrival.request, "/login", _NO_PENDING, "info")
        values, _ = await read_form(arrival.request)
        code = values.get("code", "")
        if not code:
            return await _two_step_page(step, {"code": "Enter the code."}, 422)
        try:
            token = await twostep.second_step_code(
                arrival.settings, step, code, address=arrival.address
            )
        except service.Throttled as exc:
            errors = {"form": _try_again("Too many wrong codes.", exc)}
            return _retry_after(await _two_step_page(step, errors, 429), exc)
        except ValidationFailed as exc:
            return await _two_step_page(step, exc.errors, 401)
        return _signed_in(redirect(arrival.request, step.next_url or "/"), arrival.settings, token)

    @post("/passkey/options", opt=PUBLIC, name="two_step_passkey_options")
    async def passkey_options(
        self, request: Request[Any, Any, Any], settings: AppSettings
    ) -> Response[Any]:
        step = await _pending(request)
        if step is None:
            return _json_error(_NO_PENDING, 401)
        options = await passkeys.authentication_options(
            settings, passkeys.SECOND_STEP, step.user_id
        )
        return _json(options)

    @post("/passkey", opt=PUBLIC, name="two_step_passkey")
    async def passkey(self, arrival: Arrival) -> Response[Any]:
        step = await _pending(arrival.request)
        if step is None:
            return _json_error(_NO_PENDING, 401)
        data = await _read_json(arrival.request)
        ticket, credential = _text(data, "ticket"), data.get("credential")
        try:
            token = await twostep.second_step_passkey(
                arrival.settings, step, ticket, credential, address=arrival.address
            )
        except service.Throttled as exc:
            return _retry_after(_json_error(_try_again("Too many wrong codes.", exc), 429), exc)
        except ValidationFailed as exc:
            return _refused(exc, 401)
        return _signed_in(_json({"redirect": step.next_url or "/"}), arrival.settings, token)

    @post("/cancel", opt=PUBLIC, name="two_step_cancel")
    async def cancel(self, request: Request[Any, Any, Any], settings: AppSettings) -> Response[Any]:
        await twostep.cancel(request.cookies.get(PENDING_COOKIE, ""))
        response = redirect(request, "/login", "Sign-in cancelled.", "info")
        _pending_cookie(response, settings, "")
        return response


class PasskeySignInController(Controller):
    """Signing in with a passkey alone (discoverable credentials, user verification)."""

    path = "/login/passkey"
    opt = PUBLIC
    exception_handlers = JSON_REFUSED

    @post("/options", opt=PUBLIC, name="passkey_sign_in_options")
    async def options(self, settings: AppSettings) -> Response[Any]:
        return _json(await passkeys.authentication_options(settings, passkeys.SIGN_IN))

    @post("/", opt=PUBLIC, name="passkey_sign_in")
    async def sign_in(self, arrival: Arrival) -> Response[Any]:
        data = await _read_json(arrival.request)
        try:
            token = await twostep.passkey_sign_in(
                arrival.settings,
                _text(data, "ticket"),
                data.get("credential"),
                address=arrival.address,
                browser=browser_of(arrival.request),
            )
        except service.Throttled as exc:
            message = _try_again("Too many failed sign-in attempts.", exc)
            return _retry_after(_json_error(message, 429), exc)
        except ValidationFailed as exc:
            return _refused(exc, 401)
        next_url = safe_next(_text(data, "next", 500))
        return _signed_in(_json({"redirect": next_url}), arrival.settings, token)


async def _renewed(own: OwnAccount, response: Response[Any]) -> Response[Any]:
    """A gated user who has just enrolled gets a new session (a new token)."""
    if own.user.must_enrol and await twostep.has_second_factor(own.user.id):
        token = await twostep.renew_session(
            own.settings, own.user, address=own.address, user_agent=_user_agent(own.request)
        )
        set_session_cookie(response, own.settings, token)
    return response


async def _unconfirmed(
    request: Request[Any, Any, Any], title: str, text: str, action: str, button: str
) -> Template | None:
    """None once the form confirmed the removal; else the page asking to confirm it,
    whose form posts ``confirm=yes`` back to ``action`` (it works without JavaScript)."""
    values, _ = await read_form(request)
    if values.get("confirm") == "yes":
        return None
    return Template(
        "auth/two_step_confirm.html",
        context={"title": title, "text": text, "action": action, "button": button},
    )


def _recovery_codes_page(codes: list[str], message: str) -> Template:
    """New recovery codes, shown once, now; only their hashes are kept."""
    return Template(
        "auth/recovery_codes.html", context={"codes": codes, "message": message}, status_code=201
    )


_TOTP_READY = "Your authenticator app is set up."


class TwoStepAccountController(Controller):
    """Everyone's own two-step sign-in: passkeys, the authenticator app, recovery codes.

    Reachable by a gated user (they enrol here); staff and clients alike.
    """

    path = "/account/two-step"
    guards = [requires_signed_in]
    opt = ENROLMENT
    exception_handlers = JSON_REFUSED

    @get("/", opt=ENROLMENT, name="two_step_account")
    async def index(self, user: SignedIn, viewer_zone: ViewerZone) -> Template:
        return Template(
            "auth/two_step_account.html",
            context={
                "tz": viewer_zone,
                "factors": await twostep.factors_of(user.id),
                "passkeys": await passkeys.passkeys_of(user.id),
                "required": await twostep.is_required(user.role),
            },
        )

    @get("/totp", opt=ENROLMENT, name="two_step_totp")
    async def totp_form(self, request: Request[Any, Any, Any], user: SignedIn) -> Response[Any]:
        return await _totp_setup(request, user, {})

    @post("/totp", opt=ENROLMENT, name="two_step_totp_confirm")
    async def totp_confirm(self, own: Own) -> Response[Any]:
        values, _ = await read_form(own.request)
        try:
            codes = await twostep.confirm_totp(
                own.settings, own.user, values.get("code", ""), address=own.address
            )
        except ValidationFailed as exc:
            return await _totp_setup(own.request, own.user, exc.errors)
        response = (
            _recovery_codes_page(codes, _TOTP_READY)
            if codes
            else redirect(own.request, "/account/two-step", _TOTP_READY)
        )
        return await _renewed(own, response)

    @post("/totp/remove", opt=ENROLMENT, name="two_step_totp_remove")
    async def totp_remove(self, own: Own) -> Response[Any]:
        unconfirmed = await _unconfirmed(
            own.request,
            "Remove the authenticator app?",
            "Codes from the app will no longer sign you in. Remove the "
            "account from the app afterwards.",
            "/account/two-step/totp/remove",
            "Remove the authenticator app",
        )
        if unconfirmed is not None:
            return unconfirmed
        await twostep.remove_totp(own.settings, own.user, address=own.address)
        return redirect(own.request, "/account/two-step", "Authenticator app removed.", "info")

    @post("/passkeys/options", opt=ENROLMENT, name="two_step_passkey_register_options")
    async def passkey_options(self, user: SignedIn, settings: AppSettings) -> Response[Any]:
        options = await passkeys.registration_options(settings, user.id, user.email, user.name)
        return _json(options)

    @post("/passkeys", opt=ENROLMENT, name="two_step_passkey_register")
    async def passkey_register(self, own: Own) -> Response[Any]:
        data = await _read_json(own.request)
        ticket, credential, name = (
            _text(data, "ticket"),
            data.get("credential"),
            _text(data, "name"),
        )
        try:
            await twostep.add_passkey(
                own.settings, own.user, ticket, credential, name, address=own.address
            )
        except ValidationFailed as exc:
            return _refused(exc, 422)
        json_response = _json({"redirect": "/account/two-step"}, 201)
        # The flash cookie travels with the JSON answer; the script then loads the page.
        for cookie in redirect(own.request, "/account/two-step", "Passkey added.").cookies:
            json_response.set_cookie(cookie)
        return await _renewed(own, json_response)

    @post("/passkeys/{passkey_id:int}/remove", opt=ENROLMENT, name="two_step_passkey_remove")
    async def passkey_remove(self, own: Own, passkey_id: FromPath[int]) -> Response[Any]:
        row = await passkeys.get(own.user.id, passkey_id)
        if row is None:
            raise NotFoundException("No such passkey.")
        unconfirmed = await _unconfirmed(
            own.request,
            f"Remove the passkey “{row['name']}”?",
            "It will no longer sign you in. You can add it again later.",
            f"/account/two-step/passkeys/{passkey_id}/remove",
            "Remove the passkey",
        )
        if unconfirmed is not None:
            return unconfirmed
        name = await twostep.remove_passkey(own.settings, own.user, passkey_id, address=own.address)
        return redirect(own.request, "/account/two-step", f"Passkey “{name}” removed.", "info")

    @get("/passkeys/names", opt=ENROLMENT, name="two_step_passkey_names")
    async def passkey_names(self, user: SignedIn) -> Template:
        return await _passkey_names_page(user, None, {})

    @post("/passkeys/names", opt=ENROLMENT, name="two_step_passkey_rename")
    async def passkey_rename(self, own: Own) -> Response[Any]:
        values, _ = await read_form(own.request)
        names = {
            int(key.removeprefix("name-")): str(value)
            for key, value in values.items()
            if key.startswith("name-") and key.removeprefix("name-").isdigit()
        }
        if not names:  # a form without its fields: show it again
            return await _passkey_names_page(own.user, None, {})
        try:
            changed = await twostep.rename_passkeys(own.user, names, address=own.address)
        except ValidationFailed as exc:
            return await _passkey_names_page(own.user, values, exc.errors)
        message = "Passkey names saved." if changed else "No name changed."
        return redirect(own.request, "/account/two-step", message, "info")

    @post("/recovery-codes", opt=ENROLMENT, name="two_step_recovery_codes")
    async def recovery_codes(
        self, user: SignedIn, settings: AppSettings, client_address: Address
    ) -> Template:
        codes = await twostep.new_recovery_codes(settings, user, address=client_address)
        return _recovery_codes_page(codes, "New recovery codes; the old ones no longer work.")


async def _passkey_names_page(
    user: CurrentUser, form: dict[str, Any] | None, errors: dict[str, str]
) -> Template:
    rows = await passkeys.passkeys_of(user.id)
    values = form if form is not None else {f"name-{r['id']}": r["name"] for r in rows}
    return Template(
        "auth/passkey_names.html",
        context={"passkeys": rows, "form": values, "errors": errors},
        status_code=422 if errors else 200,
    )


async def _totp_setup(
    request: Request[Any, Any, Any], user: CurrentUser, errors: dict[str, str]
) -> Response[Any]:
    """The authenticator app's set-up page (the same secret until confirmed), or back to
    the account page when it is already set up (a second tab confirmed it)."""
    if await totp.is_active(user.id):
        return redirect(request, "/account/two-step", _TOTP_READY)
    enrolment = await totp.start_enrolment(user.id, user.email)
    return Template(
        "auth/totp_setup.html",
        context={"enrolment": enrolment, "errors": errors},
        status_code=422 if errors else 200,
    )


class TwoStepPolicyController(Controller):
    """Owners choose, per staff role, whether two-step sign-in is required."""

    path = "/settings/two-step"
    guards = [requires_owner]

    @get("/", name="two_step_policy")
    async def form(self) -> Template:
        return Template(
            "auth/two_step_policy.html",
            context={
                "policy": await twostep.policy(),
                "labels": ROLE_LABELS,
                "roles": STAFF_ROLES,
            },
        )

    @post("/", name="two_step_policy_save")
    async def save(
        self, request: Request[Any, Any, Any], user: SignedIn, client_address: Address
    ) -> Response[Any]:
        _, multi = await read_form(request)
        roles = {r for r in multi.get("required", []) if r in STAFF_ROLES}
        changed = await twostep.set_policy(user, roles, address=client_address)
        message = "Two-step sign-in policy saved." if changed else "Nothing changed."
        return redirect(request, "/settings/two-step", message)


ROUTES = [
    AuthController,
    ApiTokenController,
    TwoStepSignInController,
    PasskeySignInController,
    TwoStepAccountController,
    TwoStepPolicyController,
]
