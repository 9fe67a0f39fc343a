from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from portal.auth import passkeys, service, tokens, totp, twostep
from portal.identity import ROLE_LABELS, STAFF_ROLES
from portal.settings import Settings
from portal.web.forms import ValidationFailed, read_form
from portal.web.guards import (
    current_user,
    current_user_or_none,
    requires_owner,
    requires_role,
    requires_signed_in,
)
from portal.web.responses import (
    clear_session_cookie,
    client_address,
    redirect,
    safe_next,
    set_session_cookie,
)

PUBLIC = {"public": True}
# Routes a gated user (``CurrentUser.must_enrol``) may reach: enrolment and sign-out.
ENROLMENT = {"enrolment": True}


def _settings(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _missing_credentials(email: str, password: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not email:
        errors["email"] = "Enter your email address."
    if not password:
        errors["password"] = "Enter your password."
    return errors


def _try_again(lead: str, exc: service.Throttled) -> str:
    return f"{lead} Try again in {exc.minutes} minute{'s' if exc.minutes != 1 else ''}."


def _throttled_page(
    template: str, context: dict[str, Any], exc: service.Throttled
) -> Response[Any]:
    """The form again with 429 and the Retry-After the throttle asks for."""
    response: Response[Any] = Template(template, context=context, status_code=429)
    response.headers["Retry-After"] = str(exc.retry_after_seconds)
    return response


async def _after_password(
    request: Request[Any, Any, Any], settings: Settings, token: str, next_url: str
) -> Response[Any]:
    """Signed in with the password: the session, or, for an account with a second
    factor, a pending sign-in instead of this session."""
    pending_token = await twostep.after_password(settings, token, next_url)
    if pending_token is not None:
        response = redirect(request, "/login/two-step")
        _set_pending_cookie(response, settings, pending_token)
        return response
    response = redirect(request, next_url or "/")
    set_session_cookie(response, settings, token)
    return response


class AuthController(Controller):
    path = ""

    @get("/login", opt=PUBLIC, name="login")
    async def login_page(
        self,
        request: Request[Any, Any, Any],
        next_url: Annotated[str | None, QueryParameter(name="next")] = None,
    ) -> Response[Any]:
        if current_user_or_none(request) is not None:
            return Redirect(path=safe_next(next_url), status_code=303)
        return Template(
            "auth/login.html",
            context={"form": {"email": ""}, "errors": {}, "next": safe_next(next_url, "")},
        )

    @post("/login", opt=PUBLIC, name="login_submit")
    async def login(self, request: Request[Any, Any, Any]) -> Response[Any]:
        settings = _settings(request)
        values, _ = await read_form(request)
        email = values.get("email", "")
        password = values.get("password", "")
        next_url = safe_next(values.get("next"), "")
        context: dict[str, Any] = {"form": {"email": email}, "errors": {}, "next": next_url}
        context["errors"] = _missing_credentials(email, password)
        if context["errors"]:
            return Template("auth/login.html", context=context, status_code=422)
        try:
            token = await service.sign_in(
                settings,
                email,
                password,
                address=client_address(request),
                user_agent=request.headers.get("user-agent", ""),
                replace_token=request.state.get("session_token") or None,
            )
        except service.Throttled as exc:
            context["errors"]["form"] = _try_again("Too many failed sign-in attempts.", exc)
            return _throttled_page("auth/login.html", context, exc)
        except service.InvalidCredentials:
            context["errors"]["form"] = "The email or password is not right."
            return Template("auth/login.html", context=context, status_code=401)
        return await _after_password(request, settings, token, next_url)

    @post("/logout", guards=[requires_signed_in], name="logout", opt=ENROLMENT)
    async def logout(self, request: Request[Any, Any, Any]) -> Response[Any]:
        token = request.state.get("session_token")
        if token:
            await service.end_session(token)
        response = redirect(request, "/login", "You have signed out.", "info")
        clear_session_cookie(response, _settings(request))
        return response

    @get("/account/password", guards=[requires_signed_in], name="password_form")
    async def password_form(self, request: Request[Any, Any, Any]) -> Template:
        return Template("auth/password.html", context={"errors": {}})

    @post("/account/password", guards=[requires_signed_in], name="password_change")
    async def change_password(self, request: Request[Any, Any, Any]) -> Response[Any]:
        user = current_user(request)
        values, _ = await read_form(request)
        errors: dict[str, str] = {}
        if values.get("new_password", "") != values.get("confirm_password", ""):
            errors["confirm_password"] = "The two new passwords differ."
        try:
            token, service_errors = (
                await service.change_password(
                    _settings(request),
                    user,
                    values.get("current_password", ""),
                    values.get("new_password", ""),
                    address=client_address(request),
                    user_agent=request.headers.get("user-agent", ""),
                )
                if not errors
                else ("", {})
            )
        except service.Throttled as exc:
            errors["form"] = _try_again("Too many wrong passwords.", exc)
            return _throttled_page("auth/password.html", {"errors": errors}, exc)
        errors.update(service_errors)
        if errors:
            return Template("auth/password.html", context={"errors": errors}, status_code=422)
        response = redirect(
            request, "/", "Your password was changed. Other devices have been signed out."
        )
        set_session_cookie(response, _settings(request), token)
        return response


token_holders = requires_role(*tokens.TOKEN_ROLES)


class ApiTokenController(Controller):
    """Personal API tokens for the read-only JSON API."""

    path = "/account/tokens"
    guards = [token_holders]

    @get("/", name="api_tokens")
    async def index(self, request: Request[Any, Any, Any]) -> Template:
        user = current_user(request)
        return Template(
            "auth/tokens.html",
            context={
                "tokens": await tokens.tokens_of(user.id),
                "errors": {},
                "form": {},
                "new": None,
            },
        )

    @post("/", name="api_token_create")
    async def create(self, request: Request[Any, Any, Any]) -> Template:
        user = current_user(request)
        values, _ = await read_form(request)
        try:
            _, token = await tokens.create_token(user, values.get("name", ""))
        except ValidationFailed as exc:
            return Template(
                "auth/tokens.html",
                context={
                    "tokens": await tokens.tokens_of(user.id),
                    "errors": exc.errors,
                    "form": values,
                    "new": None,
                },
                status_code=422,
            )
        # Shown once, now; only its hash is kept.
        return Template(
            "auth/tokens.html",
            context={
                "tokens": await tokens.tokens_of(user.id),
                "errors": {},
                "form": {},
                "new": token,
            },
            status_code=201,
        )

    @post("/{token_id:int}/revoke", name="api_token_revoke")
    async def revoke(
        self, request: Request[Any, Any, Any], token_id: FromPath[int]
    ) -> Response[Any]:
        if not await tokens.revoke(current_user(request), token_id):
            raise NotFoundException("No such token.")
        return redirect(request, "/account/tokens", "Token revoked; it no longer works.", "info")


# -- two-step sign-in ----------------------------------------------------------------

PENDING_COOKIE = "portal_pending"
_NO_PENDING = "Your sign-in has expired. Please sign in again."


def _set_pending_cookie(response: Response[Any], settings: Settings, token: str) -> None:
    """The pending sign-in's cookie: only sent to /login… and gone in ten minutes."""
    response.set_cookie(
        Cookie(
            key=PENDING_COOKIE,
            value=token,
            path="/login",
            httponly=True,
            samesite="lax",
            secure=settings.secure_cookies,
            max_age=twostep.PENDING_MINUTES * 60,
        )
    )


def _clear_pending_cookie(response: Response[Any], settings: Settings) -> None:
    response.set_cookie(
        Cookie(
            key=PENDING_COOKIE,
            value="",
            path="/login",
            httponly=True,
            samesite="lax",
            secure=settings.secure_cookies,
            max_age=0,
        )
    )


def _json(content: dict[str, Any], status_code: int = 200) -> Response[Any]:
    return Response(content=content, status_code=status_code, media_type=MediaType.JSON)


def _json_error(message: str, status_code: int) -> Response[Any]:
    return _json({"error": message}, status_code)


async def _read_json(request: Request[Any, Any, Any]) -> dict[str, Any] | None:
    """The JSON object posted by static/passkeys.js; None for anything else."""
    if "json" not in request.headers.get("content-type", ""):
        return None
    try:
        data = await request.json()
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def _text(data: dict[str, Any], key: str, limit: int = 200) -> str:
    value = data.get(key)
    return value[:limit] if isinstance(value, str) else ""


def _throttled_message(exc: service.Throttled) -> str:
    return (
        f"Too many wrong codes. Try again in {exc.minutes} minute{'s' if exc.minutes != 1 else ''}."
    )


async def _pending(request: Request[Any, Any, Any]) -> twostep.Pending | None:
    return await twostep.pending(request.cookies.get(PENDING_COOKIE, ""))


def _signed_in(
    request: Request[Any, Any, Any], response: Response[Any], token: str
) -> Response[Any]:
    settings = _settings(request)
    set_session_cookie(response, settings, token)
    _clear_pending_cookie(response, settings)
    return response


class TwoStepSignInController(Controller):
    """The second step after the password: an authenticator code, a recovery code or a
    passkey. Public routes: the pending sign-in is not a session; its own cookie says who."""

    path = "/login/two-step"
    opt = PUBLIC

    async def _page(
        self, step: twostep.Pending, errors: dict[str, str], status_code: int = 200
    ) -> Template:
        factors = await twostep.factors_of(step.user_id)
        return Template(
            "auth/two_step.html",
            context={"factors": factors, "errors": errors, "email": step.email},
            status_code=status_code,
        )

    @get("/", opt=PUBLIC, name="two_step_form")
    async def form(self, request: Request[Any, Any, Any]) -> Response[Any]:
        step = await _pending(request)
        if step is None:
            return redirect(request, "/login", _NO_PENDING, "info")
        return await self._page(step, {})

    @post("/", opt=PUBLIC, name="two_step_submit")
    async def submit(self, request: Request[Any, Any, Any]) -> Response[Any]:
        step = await _pending(request)
        if step is None:
            return redirect(request, "/login", _NO_PENDING, "info")
        values, _ = await read_form(request)
        code = values.get("code", "")
        if not code:
            return await self._page(step, {"code": "Enter the code."}, 422)
        try:
            token = await twostep.second_step_code(
                _settings(request), step, code, address=client_address(request)
            )
        except service.Throttled as exc:
            response = await self._page(step, {"form": _throttled_message(exc)}, 429)
            response.headers["Retry-After"] = str(exc.retry_after_seconds)
            return response
        except ValidationFailed as exc:
            return await self._page(step, exc.errors, 401)
        return _signed_in(request, redirect(request, step.next_url or "/"), token)

    @post("/passkey/options", opt=PUBLIC, name="two_step_passkey_options")
    async def passkey_options(self, request: Request[Any, Any, Any]) -> Response[Any]:
        step = await _pending(request)
        if step is None:
            return _json_error(_NO_PENDING, 401)
        options = await passkeys.authentication_options(
            _settings(request), passkeys.SECOND_STEP, step.user_id
        )
        return _json(options)

    @post("/passkey", opt=PUBLIC, name="two_step_passkey")
    async def passkey(self, request: Request[Any, Any, Any]) -> Response[Any]:
        step = await _pending(request)
        if step is None:
            return _json_error(_NO_PENDING, 401)
        data = await _read_json(request)
        if data is None:
            return _json_error("Send the passkey's answer as JSON.", 400)
        try:
            token = await twostep.second_step_passkey(
                _settings(request),
                step,
                _text(data, "ticket"),
                data.get("credential"),
                address=client_address(request),
            )
        except service.Throttled as exc:
            response = _json_error(_throttled_message(exc), 429)
            response.headers["Retry-After"] = str(exc.retry_after_seconds)
            return response
        except ValidationFailed as exc:
            return _json_error(next(iter(exc.errors.values())), 401)
        return _signed_in(request, _json({"redirect": step.next_url or "/"}), token)

    @post("/cancel", opt=PUBLIC, name="two_step_cancel")
    async def cancel(self, request: Request[Any, Any, Any]) -> Response[Any]:
        await twostep.cancel(request.cookies.get(PENDING_COOKIE, ""))
        response = redirect(request, "/login", "Sign-in cancelled.", "info")
        _clear_pending_cookie(response, _settings(request))
        return response


class PasskeySignInController(Controller):
    """Signing in with a passkey alone (discoverable credentials, user verification)."""

    path = "/login/passkey"
    opt = PUBLIC

    @post("/options", opt=PUBLIC, name="passkey_sign_in_options")
    async def options(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return _json(await passkeys.authentication_options(_settings(request), passkeys.SIGN_IN))

    @post("/", opt=PUBLIC, name="passkey_sign_in")
    async def sign_in(self, request: Request[Any, Any, Any]) -> Response[Any]:
        data = await _read_json(request)
        if data is None:
            return _json_error("Send the passkey's answer as JSON.", 400)
        try:
            token = await twostep.passkey_sign_in(
                _settings(request),
                _text(data, "ticket"),
                data.get("credential"),
                address=client_address(request),
                user_agent=request.headers.get("user-agent", ""),
                replace_token=request.state.get("session_token") or None,
            )
        except service.Throttled as exc:
            response = _json_error(
                "Too many failed sign-in attempts. "
                f"Try again in {exc.minutes} minute{'s' if exc.minutes != 1 else ''}.",
                429,
            )
            response.headers["Retry-After"] = str(exc.retry_after_seconds)
            return response
        except ValidationFailed as exc:
            return _json_error(next(iter(exc.errors.values())), 401)
        next_url = safe_next(_text(data, "next", 500))
        return _signed_in(request, _json({"redirect": next_url}), token)


class TwoStepAccountController(Controller):
    """Everyone's own two-step sign-in: passkeys, the authenticator app, recovery codes.

    Reachable by a gated user (they enrol here); staff and clients alike.
    """

    path = "/account/two-step"
    guards = [requires_signed_in]
    opt = ENROLMENT

    async def _renewed(self, request: Request[Any, Any, Any], response: Response[Any]) -> None:
        """A gated user who has just enrolled gets a new session (a new token)."""
        user = current_user(request)
        if user.must_enrol and await twostep.has_second_factor(user.id):
            token = await twostep.renew_session(
                _settings(request),
                user,
                address=client_address(request),
                user_agent=request.headers.get("user-agent", ""),
            )
            set_session_cookie(response, _settings(request), token)

    @get("/", opt=ENROLMENT, name="two_step_account")
    async def index(self, request: Request[Any, Any, Any]) -> Template:
        user = current_user(request)
        return Template(
            "auth/two_step_account.html",
            context={
                "factors": await twostep.factors_of(user.id),
                "passkeys": await passkeys.passkeys_of(user.id),
                "required": await twostep.is_required(user.role),
            },
        )

    @get("/totp", opt=ENROLMENT, name="two_step_totp")
    async def totp_form(self, request: Request[Any, Any, Any]) -> Response[Any]:
        user = current_user(request)
        if await totp.is_active(user.id):
            return redirect(request, "/account/two-step", "Your authenticator app is set up.")
        enrolment = await totp.start_enrolment(user.id, user.email)
        return Template("auth/totp_setup.html", context={"enrolment": enrolment, "errors": {}})

    @post("/totp", opt=ENROLMENT, name="two_step_totp_confirm")
    async def totp_confirm(self, request: Request[Any, Any, Any]) -> Response[Any]:
        user = current_user(request)
        values, _ = await read_form(request)
        try:
            codes = await twostep.confirm_totp(
                _settings(request), user, values.get("code", ""), address=client_address(request)
            )
        except ValidationFailed as exc:
            if await totp.is_active(user.id):
                return redirect(request, "/account/two-step", "Your authenticator app is set up.")
            enrolment = await totp.start_enrolment(user.id, user.email)
            return Template(
                "auth/totp_setup.html",
                context={"enrolment": enrolment, "errors": exc.errors},
                status_code=422,
            )
        response: Response[Any]
        if codes:
            # Shown once, now; only their hashes are kept.
            response = Template(
                "auth/recovery_codes.html",
                context={"codes": codes, "message": "Your authenticator app is set up."},
                status_code=201,
            )
        else:
            response = redirect(request, "/account/two-step", "Your authenticator app is set up.")
        await self._renewed(request, response)
        return response

    @post("/totp/remove", opt=ENROLMENT, name="two_step_totp_remove")
    async def totp_remove(self, request: Request[Any, Any, Any]) -> Response[Any]:
        values, _ = await read_form(request)
        if values.get("confirm") != "yes":
            return Template(
                "auth/two_step_confirm.html",
                context={
                    "title": "Remove the authenticator app?",
                    "text": "Codes from the app will no longer sign you in. Remove the "
                    "account from the app afterwards.",
                    "action": "/account/two-step/totp/remove",
                    "button": "Remove the authenticator app",
                },
            )
        await twostep.remove_totp(
            _settings(request), current_user(request), address=client_address(request)
        )
        return redirect(request, "/account/two-step", "Authenticator app removed.", "info")

    @post("/passkeys/options", opt=ENROLMENT, name="two_step_passkey_register_options")
    async def passkey_options(self, request: Request[Any, Any, Any]) -> Response[Any]:
        user = current_user(request)
        options = await passkeys.registration_options(
            _settings(request), user.id, user.email, user.name
        )
        return _json(options)

    @post("/passkeys", opt=ENROLMENT, name="two_step_passkey_register")
    async def passkey_register(self, request: Request[Any, Any, Any]) -> Response[Any]:
        data = await _read_json(request)
        if data is None:
            return _json_error("Send the passkey's answer as JSON.", 400)
        try:
            await twostep.add_passkey(
                _settings(request),
                current_user(request),
                _text(data, "ticket"),
                data.get("credential"),
                _text(data, "name", 200),
                address=client_address(request),
            )
        except ValidationFailed as exc:
            return _json_error(next(iter(exc.errors.values())), 422)
        response = redirect(request, "/account/two-step", "Passkey added.")
        json_response = _json({"redirect": "/account/two-step"}, 201)
        # The flash cookie travels with the JSON answer; the script then loads the page.
        for cookie in response.cookies:
            json_response.set_cookie(cookie)
        await self._renewed(request, json_response)
        return json_response

    @post("/passkeys/{passkey_id:int}/remove", opt=ENROLMENT, name="two_step_passkey_remove")
    async def passkey_remove(
        self, request: Request[Any, Any, Any], passkey_id: FromPath[int]
    ) -> Response[Any]:
        user = current_user(request)
        row = await passkeys.get(user.id, passkey_id)
        if row is None:
            raise NotFoundException("No such passkey.")
        values, _ = await read_form(request)
        if values.get("confirm") != "yes":
            return Template(
                "auth/two_step_confirm.html",
                context={
                    "title": f"Remove the passkey “{row['name']}”?",
                    "text": "It will no longer sign you in. You can add it again later.",
                    "action": f"/account/two-step/passkeys/{passkey_id}/remove",
                    "button": "Remove the passkey",
                },
            )
        name = await twostep.remove_passkey(
            _settings(request), user, passkey_id, address=client_address(request)
        )
        return redirect(request, "/account/two-step", f"Passkey “{name}” removed.", "info")

    @post("/recovery-codes", opt=ENROLMENT, name="two_step_recovery_codes")
    async def recovery_codes(self, request: Request[Any, Any, Any]) -> Template:
        codes = await twostep.new_recovery_codes(
            _settings(request), current_user(request), address=client_address(request)
        )
        return Template(
            "auth/recovery_codes.html",
            context={"codes": codes, "message": "New recovery codes; the old ones no longer work."},
            status_code=201,
        )


class TwoStepPolicyController(Controller):
    """Owners choose, per staff role, whether two-step sign-in is required."""

    path = "/settings/two-step"
    guards = [requires_owner]

    @get("/", name="two_step_policy")
    async def form(self, request: Request[Any, Any, Any]) -> Template:
        return Template(
            "auth/two_step_policy.html",
            context={
                "policy": await twostep.policy(),
                "labels": ROLE_LABELS,
                "roles": STAFF_ROLES,
            },
        )

    @post("/", name="two_step_policy_save")
    async def save(self, request: Request[Any, Any, Any]) -> Response[Any]:
        _, multi = await read_form(request)
        roles = {r for r in multi.get("required", []) if r in STAFF_ROLES}
        changed = await twostep.set_policy(
            current_user(request), roles, address=client_address(request)
        )
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
