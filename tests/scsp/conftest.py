"""An SCSP client against a broker with its SCSP facade on, over real HTTPS on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from lxml import etree

from onceonly.broker.app import BrokerApp
from onceonly.consumers import scsp as client
from onceonly.pki import cert_path, key_path
from onceonly.providers import synthetic
from onceonly.scsp import soap, wssecurity
from onceonly.scsp.soap import DATOS_NS, RESPUESTA_NS
from tests.conftest import Platform, known_everywhere, session_pki

SEAL = "housing-office-seal"
TAX_CODE = "ONCEONLY_CORRIENTE_AEAT"


def seal(name: str = SEAL) -> wssecurity.Seal:
    pki = session_pki()
    return wssecurity.Seal.from_pem(
        cert_path(pki.dir, name).read_bytes(), key_path(pki.dir, name).read_bytes()
    )


def documents(n: int) -> list[tuple[str, str]]:
    """``n`` residents every agency knows, as (TipoDocumentacion, Documentacion)."""
    found = [r for r in synthetic.population() if known_everywhere(r) and r.document_type == "DNI"][:n]
    assert len(found) == n
    return [("DNI", r.document_number) for r in found]


@dataclass
class Scsp:
    """The facade of one broker, and a client that signs as the housing office by default."""

    app: BrokerApp
    url: str

    async def raw(
        self, body: bytes, action: str, *, cert: str | None = "housing-office"
    ) -> tuple[int, bytes]:
        context = client.client_context(session_pki().dir, cert)
        return await asyncio.to_thread(client.post, self.url, body, action, context)

    async def send(
        self,
        message: etree._Element,
        action: str = "peticionSincrona",
        *,
        signer: wssecurity.Seal | None = None,
        unsigned: bool = False,
        sha1: bool = False,
    ) -> client.Answer:
        body = client.signed_envelope(message, None if unsigned else (signer or seal()), sha1=sha1)
        status, data = await self.raw(body, action)
        answer = client.read_answer(data, session_pki().dir)
        assert (status == 200) != answer.fault, (status, answer.text)
        return answer

    async def verify(
        self, subjects: Iterable[tuple[str, str]], *, id_peticion: str, **kwargs: Any
    ) -> client.Answer:
        return await self.send(client.peticion(id_peticion, kwargs.pop("code", TAX_CODE), subjects, **kwargs))

    async def submit(
        self, subjects: Iterable[tuple[str, str]], *, id_peticion: str, **kwargs: Any
    ) -> client.Answer:
        message = client.peticion(id_peticion, kwargs.pop("code", TAX_CODE), subjects, **kwargs)
        return await self.send(message, "peticionAsincrona")

    async def result(self, id_peticion: str, elements: int, code: str = TAX_CODE) -> client.Answer:
        return await self.send(client.solicitud_respuesta(id_peticion, elements, code), "solicitudRespuesta")

    async def wait(self, id_peticion: str, elements: int, *, timeout_s: float = 30.0) -> client.Answer:
        """Ask for the answer until it is done (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            answer = await self.result(id_peticion, elements)
            if answer.code != "0002" or loop.time() > deadline:
                return answer
            await asyncio.sleep(0.1)


def transmissions(answer: client.Answer) -> list[etree._Element]:
    return answer.message.findall(f"{{{RESPUESTA_NS}}}Transmisiones/{{{RESPUESTA_NS}}}TransmisionDatos")


def claims(transmission: etree._Element) -> Mapping[str, str]:
    path = ("DatosEspecificos", "Retorno", "Afirmaciones", "Afirmacion")
    base = "/".join(f"{{{DATOS_NS}}}{n}" for n in path)
    return {
        a.findtext(f"{{{DATOS_NS}}}Nombre") or "": a.findtext(f"{{{DATOS_NS}}}Valor") or ""
        for a in transmission.findall(base)
    }


def datos(transmission: etree._Element, path: str) -> str:
    return soap.text_of(transmission, DATOS_NS, f"DatosEspecificos/{path}")


def generic(transmission: etree._Element, path: str) -> str:
    return soap.text_of(transmission, RESPUESTA_NS, f"DatosGenericos/{path}")


async def start_scsp(platform: Platform, **changes: Any) -> Scsp:
    if not platform.providers:
        await platform.start_reference_providers()
    app = await platform.start_broker(scsp_listen="127.0.0.1:0", **changes)
    assert app.scsp is not None
    return Scsp(app, f"{app.scsp.url}/scsp")


@pytest.fixture
async def scsp(platform: Platform) -> Scsp:
    return await start_scsp(platform)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
