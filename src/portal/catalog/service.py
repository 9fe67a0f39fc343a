"""Catalog: services, packages, versioned prices and per-location overrides. No HTTP.

One module per seam, from the bottom up: ``inputs`` (the forms, effective
times), ``pricing`` (versions, the selection rule, offers, the terms a sale
keeps), ``listing`` (reading, the public catalog, quotes), ``entities`` (what
creating and editing a service or package share), ``prices`` (new versions,
overrides), ``services`` and ``packages``. This module re-exports their names
for the other contexts (sales and payments quote packages); the catalog's own
pages import the module they use.
"""

from __future__ import annotations

from portal.catalog.inputs import (
    LOCAL_FORMATS,
    MAX_AMOUNT_CENTS,
    MAX_BUFFER,
    MAX_DURATION,
    MAX_SESSIONS,
    MAX_VALIDITY_DAYS,
    MIN_DURATION,
    PACKAGE_FIELDS,
    PAST_MESSAGE,
    SERVICE_FIELDS,
    PackageInput,
    PriceInput,
    ServiceInput,
    local_to_utc,
    parse_end_override_form,
    parse_package_form,
    parse_price_form,
    parse_service_form,
    resolve_effective,
)
from portal.catalog.listing import (
    all_services,
    base_price_zones,
    get_package,
    get_service,
    list_packages,
    list_services,
    location_offers,
    package_offers,
    public_catalog,
    quote_package,
)
from portal.catalog.packages import (
    create_package,
    set_package_active,
    update_package,
)
from portal.catalog.prices import (
    add_package_price,
    add_service_price,
    end_override,
    insert_version,
    override_history,
    set_override,
    version_record,
)
from portal.catalog.pricing import (
    NotAvailable,
    Offer,
    PackageTerms,
    PriceVersion,
    build_offer,
    package_versions,
    price_in_effect,
    select_price,
    service_price_in_effect,
    service_versions,
    terms_from_offer,
    version_history,
    version_in_effect,
)
from portal.catalog.services import (
    create_service,
    set_service_active,
    update_service,
)

__all__ = [
    "LOCAL_FORMATS",
    "MAX_AMOUNT_CENTS",
    "MAX_BUFFER",
    "MAX_DURATION",
    "MAX_SESSIONS",
    "MAX_VALIDITY_DAYS",
    "MIN_DURATION",
    "PACKAGE_FIELDS",
    "PAST_MESSAGE",
    "SERVICE_FIELDS",
    "NotAvailable",
    "Offer",
    "PackageInput",
    "PackageTerms",
    "PriceInput",
    "PriceVersion",
    "ServiceInput",
    "add_package_price",
    "add_service_price",
    "all_services",
    "base_price_zones",
    "build_offer",
    "create_package",
    "create_service",
    "end_override",
    "get_package",
    "get_service",
    "insert_version",
    "list_packages",
    "list_services",
    "local_to_utc",
    "location_offers",
    "override_history",
    "package_offers",
    "package_versions",
    "parse_end_override_form",
    "parse_package_form",
    "parse_price_form",
    "parse_service_form",
    "price_in_effect",
    "public_catalog",
    "quote_package",
    "resolve_effective",
    "select_price",
    "service_price_in_effect",
    "service_versions",
    "set_override",
    "set_package_active",
    "set_service_active",
    "terms_from_offer",
    "update_package",
    "update_service",
    "version_history",
    "version_in_effect",
    "version_record",
]
