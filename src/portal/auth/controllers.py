from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from portal.auth import service, tokens
from portal.settings import Settings
from portal.web.forms import ValidationFailed, read_form
from portal.web.guards import (
    current_user,
    current_user_or_none,
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


def _settings(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


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
        if not email or not password:
            if not email:
                context["errors"]["email"] = "Enter your email address."
            if not password:
                context["errors"]["password"] = "Enter your password."
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
            context["errors"]["form"] = (
                "Too many failed sign-in attempts. "
                f"Try again in {exc.minutes} minute{'s' if exc.minutes != 1 else ''}."
            )
            response: Response[Any] = Template("auth/login.html", context=context, status_code=429)
            response.headers["Retry-After"] = str(exc.retry_after_seconds)
            return response
        except service.InvalidCredentials:
            context["errors"]["form"] = "The email or password is not right."
            return Template("auth/login.html", context=context, status_code=401)
        response = redirect(request, next_url or "/")
        set_session_cookie(response, settings, token)
        return response

    @post("/logout", guards=[requires_signed_in], name="logout")
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
            errors["form"] = (
                "Too many wrong passwords. "
                f"Try again in {exc.minutes} minute{'s' if exc.minutes != 1 else ''}."
            )
            response: Response[Any] = Template(
                "auth/password.html", context={"errors": errors}, status_code=429
            )
            response.headers["Retry-After"] = str(exc.retry_after_seconds)
            return response
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


ROUTES = [AuthController, ApiTokenController]
