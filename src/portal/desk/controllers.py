"""The front desk's pages: a client's record (the hub), a new client, finding a client
as one types, writing to a client."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from portal.auth.service import MANAGER, OWNER, CurrentUser
from portal.clients import accounts
from portal.clients import service as clients
from portal.desk import service
from portal.email.controllers import deliver_later
from portal.errors import Invalid
from portal.locations.service import all_locations
from portal.onetime import service as onetime
from portal.web.admin import reverse
from portal.web.deps import Actor, SignedIn
from portal.web.forms import read_form
from portal.web.guards import requires_role
from portal.web.responses import redirect

desk = requires_role(OWNER, MANAGER)
LOOKUP_LIMIT = 8


async def _clinics(user: CurrentUser) -> list[tuple[int, str]]:
    """The clinics the user works the desk of (may write at)."""
    rows = await all_locations(active_only=True, visible_to=user)
    return [(int(r["id"]), str(r["name"])) for r in rows]


def _one_clinic(form: dict[str, Any], clinics: list[tuple[int, str]]) -> dict[str, Any]:
    """The form with a fresh one-time key, and the clinic chosen when there is one only."""
    if not form.get("location_id") and len(clinics) == 1:
        form = {**form, "location_id": clinics[0][0]}
    return {**form, onetime.FIELD: onetime.new_key()}


class DeskController(Controller):
    path = "/clients"
    guards = [desk]

    @get("/{client_id:int}", name="client_detail")
    async def record(self, user: SignedIn, client_id: FromPath[int]) -> Template:
        return Template("desk/record.html", context=await service.client_record(user, client_id))

    @get("/lookup", name="client_lookup")
    async def lookup(
        self,
        user: SignedIn,
        q: Annotated[str, QueryParameter(name="q")] = "",
        client_email: Annotated[str, QueryParameter(name="client_email")] = "",
    ) -> Template:
        """Clients matching what was typed (name, email or phone), as the options of the
        sale and booking forms' client field (htmx fills its list as one types)."""
        text = (q or client_email).strip()[:120]
        rows = []
        if len(text) >= 2:
            rows = (await clients.list_clients(user, search=text, limit=LOOKUP_LIMIT)).rows
        return Template("desk/_matches.html", context={"rows": rows})

    @get("/new", name="client_new")
    async def new(self, user: SignedIn) -> Template:
        return await _new_client_page(user, {}, {})

    @post("/new", name="client_create")
    async def create(self, acting: Actor) -> Response[Any]:
        request, user, settings = acting.request, acting.user, acting.settings
        values, _ = await read_form(request)
        try:
            created = await accounts.create_client(
                settings,
                user,
                accounts.parse_new_client(values),
                request_key=onetime.parse(values.get(onetime.FIELD)),
                address=acting.address,
            )
        except Invalid as exc:
            return await _new_client_page(user, values, exc.errors)
        response = redirect(
            request,
            reverse(request, "client_detail", client_id=created.client_id),
            "Client created. We emailed them an invitation to choose a password.",
        )
        deliver_later(response, settings, created.message_id)
        return response

    @get("/{client_id:int}/message", name="client_message")
    async def message_form(self, user: SignedIn, client_id: FromPath[int]) -> Template:
        client = await clients.get_client_for(user, client_id)
        return await _message_page(user, client, {}, {})

    @post("/{client_id:int}/message", name="client_message_send")
    async def message_send(self, acting: Actor, client_id: FromPath[int]) -> Response[Any]:
        request, user, settings = acting.request, acting.user, acting.settings
        client = await clients.get_client_for(user, client_id)
        values, _ = await read_form(request)
        try:
            sent = await service.message_client(
                settings,
                user,
                client_id,
                service.parse_message(user, values),
                address=acting.address,
            )
        except Invalid as exc:
            return await _message_page(user, client, values, exc.errors)
        response = redirect(
            request,
            reverse(request, "client_detail", client_id=client_id),
            "Message sent." if not sent.repeated else "This message was already sent.",
        )
        deliver_later(response, settings, None if sent.repeated else sent.message_id)
        return response

    @get("/{client_id:int}/staff-notes", name="client_staff_notes")
    async def staff_notes_form(self, user: SignedIn, client_id: FromPath[int]) -> Template:
        client = await clients.get_client_for(user, client_id)
        return _staff_notes_page(client, {}, {})

    @post("/{client_id:int}/staff-notes", name="client_staff_notes_save")
    async def staff_notes_save(self, acting: Actor, client_id: FromPath[int]) -> Response[Any]:
        request, user = acting.request, acting.user
        values, _ = await read_form(request)
        try:
            await clients.set_staff_notes(
                user,
                client_id,
                values.get("staff_notes", ""),
                seen=values.get("seen", ""),
                address=acting.address,
            )
        except Invalid as exc:
            client = await clients.get_client_for(user, client_id)
            return _staff_notes_page(client, values, exc.errors)
        return redirect(
            request,
            reverse(request, "client_detail", client_id=client_id),
            "Notes for staff saved.",
        )


def _staff_notes_page(
    client: dict[str, Any], values: dict[str, Any], errors: dict[str, str]
) -> Template:
    """The notes as the editor left them, and what is saved now (to start from)."""
    form = {"staff_notes": client["staff_notes"], **values, "seen": client["staff_notes"]}
    return Template(
        "desk/staff_notes.html",
        context={"client": client, "form": form, "errors": errors},
        status_code=422 if errors else 200,
    )


async def _new_client_page(
    user: CurrentUser, values: dict[str, Any], errors: dict[str, str]
) -> Template:
    clinics = await _clinics(user)
    return Template(
        "desk/new_client.html",
        context={"form": _one_clinic(values, clinics), "errors": errors, "clinics": clinics},
        status_code=422 if errors else 200,
    )


async def _message_page(
    user: CurrentUser, client: dict[str, Any], values: dict[str, Any], errors: dict[str, str]
) -> Template:
    clinics = await _clinics(user)
    return Template(
        "desk/message.html",
        context={
            "client": client,
            "form": _one_clinic(values, clinics),
            "errors": errors,
            "clinics": clinics,
        },
        status_code=422 if errors else 200,
    )


ROUTES = [DeskController]
