"""``onceonly pki``: a development CA whose certificates carry who is who."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from onceonly import pki
from onceonly.pki import CertIdentity, CertificateAuthority, PkiError, identity_from_pem


def test_init_issues_every_identity_and_is_idempotent(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    assert pki.main(["init", "--dir", str(directory)]) == 0
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    assert pki.main(["init", "--dir", str(directory)]) == 0

    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before  # CA and certificates reused
    expected = {
        "broker": CertIdentity("onceonly", "broker", "broker"),
        "tax": CertIdentity("tax", "provider", "tax"),
        "housing-office": CertIdentity("L01280796", "consumer", "housing-office"),
        "oversight": CertIdentity("AEPD", "oversight", "oversight"),
    }
    for name, identity in expected.items():
        assert identity_from_pem((directory / f"{name}.pem").read_bytes()) == identity
        assert stat.S_IMODE((directory / f"{name}-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "ca-key.pem").stat().st_mode) == 0o600
    broker = x509.load_pem_x509_certificate((directory / "broker.pem").read_bytes())
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


def test_issue_reuses_the_ca_and_names_the_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "pki"
    assert pki.main(["init", "--dir", str(directory)]) == 0
    ca = (directory / "ca.pem").read_bytes()

    code = pki.main(
        [
            "issue",
            "--dir",
            str(directory),
            "--role",
            "consumer",
            "--org",
            "L01280796",
            "--name",
            "housing-app",
        ]
    )

    assert code == 0
    assert (directory / "ca.pem").read_bytes() == ca
    cert = (directory / "housing-app.pem").read_bytes()
    assert identity_from_pem(cert) == CertIdentity("L01280796", "consumer", "housing-app")
    authority = CertificateAuthority.load_or_create(directory)
    assert authority.issued(x509.load_pem_x509_certificate(cert))
    assert "housing-app" in capsys.readouterr().out


def test_bad_requests_are_refused(tmp_path: Path) -> None:
    authority = CertificateAuthority.load_or_create(tmp_path)
    with pytest.raises(PkiError, match="role"):
        authority.issue("x", role="admin", organization_id="L01280796")
    with pytest.raises(PkiError):
        authority.issue("../x", role="consumer", organization_id="L01280796")
    (tmp_path / "half").mkdir()
    (tmp_path / "half/ca.pem").write_bytes((tmp_path / "ca.pem").read_bytes())
    with pytest.raises(PkiError, match="both"):
        CertificateAuthority.load_or_create(tmp_path / "half")


def test_a_certificate_without_a_role_names_no_identity(tmp_path: Path) -> None:
    authority = CertificateAuthority.load_or_create(tmp_path)
    # The CA's own certificate (an O and a CN, no OU) is refused first of all for being a CA.
    with pytest.raises(ValueError, match="CA certificate"):
        identity_from_pem((tmp_path / "ca.pem").read_bytes())
    assert authority.issued(authority.cert)


def test_the_onceonly_command_runs_pki(tmp_path: Path) -> None:
    from onceonly.consumers.cli import main

    assert main(["pki", "init", "--dir", str(tmp_path / "pki")]) == 0
    assert (tmp_path / "pki/housing-office.pem").exists()
