"""What the console's pages share: who is signed in (:class:`Person`), the console's settings, and
:class:`Pages`, what a page module may use of the console (so that page modules need not import
the application that routes to them)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse

from onceonly.consumers.oversight import OversightClient
from onceonly.consumers.resident import ResidentClient

__all__ = ["DEFAULT_MINUTES_SAVED", "ConsoleSettings", "PageClient", "Pages", "Person"]

DEFAULT_MINUTES_SAVED = 30
"""Minutes a resident saves per certificate not brought, where no figure is configured for its type."""


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    """Signs the session cookie (a fresh one per process unless given)."""
    minutes_per_certificate: Mapping[str, int] = field(default_factory=dict)
    """Open data's impact: the minutes a resident saves when a certificate of a type is verified
    instead of brought (``ONCEONLY_CONSOLE_MINUTES``: ``type=minutes,…``)."""
    default_minutes: int = DEFAULT_MINUTES_SAVED

    def minutes_for(self, certificate_type_id: str) -> int:
        return self.minutes_per_certificate.get(certificate_type_id, self.default_minutes)

    @staticmethod
    def parse_minutes(text: str) -> dict[str, int]:
        """``type=minutes,…`` as a mapping; ``ValueError`` naming the bad entry."""
        out = {}
        for entry in filter(None, (e.strip() for e in text.split(","))):
            name, _, minutes = entry.partition("=")
            if not name.strip() or not minutes.strip().isdigit():
                raise ValueError(f"ONCEONLY_CONSOLE_MINUTES: {entry!r} is not type=minutes")
            out[name.strip()] = int(minutes)
        return out


@dataclass(frozen=True, slots=True)
class Person:
    """Who is signed in, as the broker confirmed it (``WhoAmI``)."""

    organization_id: str
    organisation_name: str
    role: str
    via: str
    officer_id: str
    certificate_der: bytes | None = None
    token: str | None = None


class PageClient(OversightClient, ResidentClient):
    """What page modules call on the broker: the Oversight and ResidentAccess services."""


class Pages(Protocol):
    """What a page module uses of the console."""

    @property
    def client(self) -> PageClient: ...

    @property
    def settings(self) -> ConsoleSettings: ...

    def relay(self, person: Person) -> PageClient: ...

    def language(self, request: Request) -> str: ...

    def render(
        self, request: Request, template: str, person: Person | None, status: int = 200, /, **context: Any
    ) -> HTMLResponse: ...

    async def check_csrf(self, request: Request) -> FormData: ...

    async def names(self) -> dict[str, str]: ...
