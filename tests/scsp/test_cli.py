"""``onceonly scsp``: an agency tries its own XML against the facade, as a subprocess; the mapping
file and the seal certificates it needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from onceonly.broker.catalog import Catalog
from onceonly.broker.scsp import load_mapping
from onceonly.pki import cert_path
from tests.conftest import Platform, free_port, session_pki
from tests.consumers.test_cli import cli
from tests.scsp.conftest import Scsp, documents

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


async def test_an_agency_sends_its_own_petition(platform: Platform, scsp: Scsp, tmp_path: Path) -> None:
    tls = str(session_pki().dir)
    [(_, number)] = documents(1)
    code, out, err = await cli("scsp", "example", "--id", "CLI-PET-1", "--document", number)
    assert code == 0, err
    petition = tmp_path / "peticion.xml"
    petition.write_text(out)
    assert etree.fromstring(out.encode()).tag.endswith("}Peticion")

    code, out, err = await cli("scsp", "send", str(petition), "--url", scsp.url, "--tls-dir", tls)
    assert code == 0, err
    assert "0003 Tramitada (signed by broker-seal (onceonly))" in err
    answer = etree.fromstring(out.encode())
    assert answer.tag.endswith("}Respuesta")
    assert len(platform.trace_rows(request_id="CLI-PET-1.1")) == 1

    # The same file sent asynchronously is another petition's id: refused, named in a fault.
    code, out, err = await cli(
        "scsp", "send", str(petition), "--url", scsp.url, "--tls-dir", tls, "--action", "peticionAsincrona"
    )
    assert code == 1 and "fault [0229]" in err, err


async def test_asynchronous_through_the_command(platform: Platform, scsp: Scsp, tmp_path: Path) -> None:
    tls = str(session_pki().dir)
    docs = [d for _, d in documents(2)]
    _, out, _ = await cli("scsp", "example", "--id", "CLI-ASYNC-1", *[f"--document={d}" for d in docs])
    (tmp_path / "p.xml").write_text(out)
    code, _, err = await cli(
        "scsp",
        "send",
        str(tmp_path / "p.xml"),
        "--url",
        scsp.url,
        "--tls-dir",
        tls,
        "--action",
        "peticionAsincrona",
    )
    assert code == 0 and "0002 " in err, err
    _, out, _ = await cli("scsp", "example", "--result", "CLI-ASYNC-1", "--elements", "2")
    (tmp_path / "r.xml").write_text(out)
    for _ in range(100):  # bounded: two subjects are decided in a moment
        code, out, err = await cli(
            "scsp", "send", str(tmp_path / "r.xml"), "--url", scsp.url, "--tls-dir", tls
        )
        if "0003 " in err:
            break
    assert code == 0 and "0003 Tramitada" in err, err
    assert out.count("TransmisionDatos>") == 4  # two, each opened and closed


async def test_what_goes_wrong_is_said(scsp: Scsp, tmp_path: Path) -> None:
    tls = str(session_pki().dir)
    broken = tmp_path / "broken.xml"
    broken.write_text("<Peticion>")
    code, _, err = await cli("scsp", "send", str(broken), "--url", scsp.url, "--tls-dir", tls)
    assert code == 2 and err.startswith("error: [0401] not well-formed XML"), err

    _, out, _ = await cli("scsp", "example", "--code", "NO_SUCH_CODE", "--document", documents(1)[0][1])
    (tmp_path / "unknown.xml").write_text(out)
    code, _, err = await cli(
        "scsp", "send", str(tmp_path / "unknown.xml"), "--url", scsp.url, "--tls-dir", tls
    )
    assert code == 1 and "fault [0234] certificate code 'NO_SUCH_CODE' is not mapped" in err, err

    down = f"https://127.0.0.1:{free_port()}/scsp"
    code, _, err = await cli("scsp", "send", str(tmp_path / "unknown.xml"), "--url", down, "--tls-dir", tls)
    assert code == 4 and "no answer" in err and "Traceback" not in err, err


def test_the_mapping_file_must_fit_the_catalog(tmp_path: Path) -> None:
    catalog = Catalog.load(None)
    mapping = load_mapping(None, catalog)
    assert mapping["ONCEONLY_NIVEL_RENTA"].parameters == {
        "Umbral": "threshold_eur",
        "Ejercicio": "fiscal_year",
    }
    bad = tmp_path / "scsp.toml"
    bad.write_text('[certificates.X]\ntype = "no.such/v1"\n')
    with pytest.raises(ValueError, match=r"certificates\.X\.type: 'no\.such/v1' is not in the catalog"):
        load_mapping(bad, catalog)
    bad.write_text('[certificates.X]\ntype = "tax.compliance/v1"\nparameters = { Foo = "bar" }\n')
    with pytest.raises(
        ValueError, match=r"certificates\.X\.parameters\.Foo: tax\.compliance/v1 has no parameter 'bar'"
    ):
        load_mapping(bad, catalog)


async def test_seals_are_rsa_and_issued_on_request(tmp_path: Path) -> None:
    pki = session_pki()
    for name in ("housing-office-seal", "broker-seal"):
        cert = x509.load_pem_x509_certificate(cert_path(pki.dir, name).read_bytes())
        assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    code, _, err = await cli(
        "pki",
        "issue",
        "--dir",
        str(tmp_path),
        "--role",
        "consumer",
        "--org",
        "E04990101",
        "--name",
        "sepe-seal",
        "--key",
        "rsa",
    )
    assert code == 0, err
    cert = x509.load_pem_x509_certificate(cert_path(tmp_path, "sepe-seal").read_bytes())
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)


async def test_a_broker_without_its_seal_says_how_to_make_one(platform: Platform, tmp_path: Path) -> None:
    import shutil

    pki = tmp_path / "pki"
    shutil.copytree(session_pki().dir, pki)
    (pki / "broker-seal.pem").unlink()
    await platform.start_reference_providers()
    with pytest.raises(ValueError, match=r"onceonly pki issue .* --name broker-seal --key rsa"):
        await platform.start_broker(scsp_listen="127.0.0.1:0", tls_dir=pki)
