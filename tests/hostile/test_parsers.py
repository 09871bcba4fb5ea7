"""Fuzzing the parsers hostile bytes reach: document numbers, provider answers, JWS, evidence.

Each may refuse its input only with its own error (``InvalidDocument``, ``ValueError`` for
claims, ``JwsError``, ``EvidenceError``): any other exception would become an INTERNAL
status somewhere up the call.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import struct_pb2
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from onceonly import identity, jose
from onceonly.broker.providers import _plain
from onceonly.evidence import EVIDENCE_TYPE, EvidenceError, EvidenceSigner, EvidenceVerifier, evidence_digest
from onceonly.fields import FieldSpec, FieldType, normalise_claims, parse_parameter
from onceonly.pki import CertificateAuthority
from onceonly.v1 import provider_pb2

from .conftest import examples
from .strategies import messages, text_chars, texts

pytestmark = pytest.mark.hostile

# --- identity documents ---------------------------------------------------------------------

_DNI = re.compile(r"[0-9]{8}[A-Z]")
_NIE = re.compile(r"[XYZ][0-9]{7}[A-Z]")


def _sloppy(value: str, data: st.DataObject) -> str:
    """How people type a document number: any case, spaces and dashes around and between."""
    out = ""
    for ch in value:
        out += data.draw(st.sampled_from(["", " ", "-", "  "])) + (
            ch.lower() if data.draw(st.booleans()) else ch
        )
    return (
        data.draw(st.sampled_from(["", " ", "\t", "\n"])) + out + data.draw(st.sampled_from(["", " ", "\n"]))
    )


@settings(max_examples=examples(300))
@given(number=st.integers(0, 99_999_999), data=st.data())
def test_every_valid_dni_is_accepted_and_normalised(number: int, data: st.DataObject) -> None:
    dni = identity.make_dni(number)
    assert identity.validate_dni(dni) == dni
    assert identity.validate_dni(_sloppy(dni, data)) == dni
    wrong = dni[:8] + data.draw(st.sampled_from([c for c in identity.CHECK_LETTERS if c != dni[8]]))
    with pytest.raises(identity.InvalidDocument):
        identity.validate_dni(wrong)


@settings(max_examples=examples(300))
@given(prefix=st.sampled_from("XYZ"), number=st.integers(0, 9_999_999), data=st.data())
def test_every_valid_nie_is_accepted_and_normalised(prefix: str, number: int, data: st.DataObject) -> None:
    nie = identity.make_nie(prefix, number)
    assert identity.validate_nie(nie) == nie
    assert identity.validate_nie(_sloppy(nie, data)) == nie
    with pytest.raises(identity.InvalidDocument):
        identity.validate_dni(nie)


near_documents = st.one_of(
    texts(),
    st.text(
        st.sampled_from(
            "0123456789XYZTRWAGMYFPDBNJSQVHLCKEabcxyz -\n\t\u0661\u0662\uff13\u00df\u0131\u0130\ufb00"
        ),
        max_size=14,
    ),
    st.builds(lambda n, c: f"{n:08d}{c}", st.integers(0, 99_999_999), st.characters(codec="utf-8")),
    st.builds(
        lambda p, n, c: f"{p}{n:07d}{c}", st.sampled_from("XYZxyzW"), st.integers(0, 9_999_999), text_chars
    ),
)


@settings(max_examples=examples(1500))
@given(value=near_documents)
# A newline inside, left at the end once the dash goes: "$" matched before it (found by this test).
@example(value="000\ufb00\n-")
@example(value="12345678Z\n-")
def test_any_string_is_a_valid_document_or_invalid_document(value: str) -> None:
    """Accepted only in canonical form with the right letter; otherwise InvalidDocument, nothing else."""
    for validate, shape in ((identity.validate_dni, _DNI), (identity.validate_nie, _NIE)):
        try:
            result = validate(value)
        except identity.InvalidDocument:
            continue
        assert shape.fullmatch(result), (value, result)
        digits = (
            result[:8]
            if validate is identity.validate_dni
            else "XYZ".index(result[0]).__str__() + result[1:8]
        )
        assert identity.check_letter(int(digits)) == result[8]
    try:
        passport = identity.validate_passport(value)
    except identity.InvalidDocument:
        return
    assert re.fullmatch(r"[A-Z0-9]{5,20}", passport), (value, passport)


# --- parameters and claims ------------------------------------------------------------------

SPECS = tuple(FieldSpec(f"f_{t.value}", t, required=r) for t in FieldType for r in (True, False))


@settings(max_examples=examples(500))
@given(spec=st.sampled_from(SPECS), text=texts())
def test_parse_parameter_refuses_only_with_value_error(spec: FieldSpec, text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_parameter(spec, text)


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**70), 2**70).map(float),
        texts(),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts(), inner, max_size=4)),
    max_leaves=12,
)


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    for key, value in values.items():
        try:
            struct.update({key: value})
        except (ValueError, TypeError):  # protobuf refuses some Python values; leave them out
            continue
    return struct


claims_dicts = st.dictionaries(
    st.one_of(st.sampled_from([s.name for s in SPECS]), texts()), json_values, max_size=len(SPECS) + 2
)


@settings(max_examples=examples(500))
@given(claims=claims_dicts, specs=st.lists(st.sampled_from(SPECS), unique=True, max_size=len(SPECS)))
def test_provider_claims_are_normalised_or_refused_with_value_error(
    claims: dict[str, Any], specs: list[FieldSpec]
) -> None:
    """A provider's Struct, read as the broker reads it (``_plain``), then checked against the specs."""
    struct = _struct(claims)
    reply = provider_pb2.AttestResponse.FromString(
        provider_pb2.AttestResponse(
            result=provider_pb2.AttestResponse.RESULT_FOUND, claims=struct
        ).SerializeToString()
    )
    plain = {k: _plain(v) for k, v in reply.claims.fields.items()}
    try:
        checked = normalise_claims(tuple(specs), plain)
    except ValueError:
        return
    json.dumps(checked, allow_nan=False)  # what is signed is plain JSON
    assert set(checked) <= {s.name for s in specs}


@settings(max_examples=examples(300))
@given(reply=messages(provider_pb2.AttestResponse.DESCRIPTOR))
def test_random_attest_responses_read_as_plain_values(reply: provider_pb2.AttestResponse) -> None:
    for value in reply.claims.fields.values():
        _plain(value)


# --- JWS and provider evidence --------------------------------------------------------------

_ED = Ed25519PrivateKey.generate()
_EC = ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


segments = st.one_of(
    st.text(
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="), max_size=60
    ),
    st.binary(max_size=48).map(_b64),
    st.sampled_from(
        [
            _b64(b"{}"),
            _b64(b"[]"),
            _b64(b"null"),
            _b64(b'{"alg":"ES256"}'),
            _b64(b'{"alg":"EdDSA"}'),
            _b64(json.dumps({"alg": "ES256", "typ": EVIDENCE_TYPE, "x5t#S256": "x"}).encode()),
            _b64(b"[" * 5000),
            _b64(b'{"a":' * 3000),
        ]
    ),
    texts(),
)
tokens = st.one_of(
    st.builds(lambda parts: ".".join(parts), st.lists(segments, min_size=0, max_size=5)),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", segments, segments, segments),
    texts(),
)


@settings(max_examples=examples(800))
@given(token=tokens)
def test_jws_parse_and_verify_refuse_only_with_jws_error(token: str) -> None:
    for call in (
        lambda: jose.parse(token),
        lambda: jose.verify(token, _ED.public_key()),
        lambda: jose.verify(token, _EC.public_key()),
    ):
        with contextlib.suppress(jose.JwsError):
            call()


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> tuple[EvidenceSigner, EvidenceVerifier]:
    from onceonly.pki import TlsConfig

    directory = tmp_path_factory.mktemp("evidence-pki")
    ca = CertificateAuthority.load_or_create(directory)
    ca.issue("registry", role="provider", organization_id="registry", server=True)
    signer = EvidenceSigner.from_tls(TlsConfig.from_dir(directory, "registry"))
    verifier = EvidenceVerifier.from_ca_file(directory / "ca.pem")
    verifier.register("registry", signer.certificate_b64)
    return signer, verifier


EXPECTED = {
    "request_id": "r",
    "trace_id": "t",
    "certificate_type": "registry.residence/v1",
    "sub": "DNI:1",
    "parameters": {},
    "result": "FOUND",
    "claims": {"registered": True},
}


@settings(max_examples=examples(500))
@given(token=tokens, provider=st.sampled_from(["registry", "tax", ""]), data=st.data())
def test_evidence_is_verified_or_refused_with_evidence_error(
    evidence: tuple[EvidenceSigner, EvidenceVerifier], token: str, provider: str, data: st.DataObject
) -> None:
    signer, verifier = evidence
    if data.draw(st.booleans()):  # a real header (so the key is found), then anything
        real = signer.sign(EXPECTED)
        head = real.split(".", 1)[0]
        token = data.draw(
            st.sampled_from(
                [f"{head}.{token}", f"{head}.{token}.", real[:-3] + token, real.replace(".", ".A", 1)]
            )
        )
    with contextlib.suppress(EvidenceError):
        verifier.verify(token, provider, EXPECTED)
    evidence_digest(token)


@settings(max_examples=examples(100))
@given(claims=claims_dicts)
def test_evidence_over_other_claims_is_refused(
    evidence: tuple[EvidenceSigner, EvidenceVerifier], claims: dict[str, Any]
) -> None:

    signer, verifier = evidence
    try:
        token = signer.sign({**EXPECTED, "claims": claims})
    except ValueError:  # NaN and other values JSON cannot carry: nothing to sign
        return
    assume(claims != EXPECTED["claims"])
    with pytest.raises(EvidenceError):
        verifier.verify(token, "registry", EXPECTED)


def test_regressions_found_by_fuzzing(evidence: tuple[EvidenceSigner, EvidenceVerifier]) -> None:
    """Non-ASCII after a valid evidence header escaped as UnicodeEncodeError (an INTERNAL Verify)."""
    signer, verifier = evidence
    head = signer.sign(EXPECTED).split(".", 1)[0]
    for token in (f"{head}.\u202eevil.", f"{head}.e30.\x80", "e30..\x80"):
        with pytest.raises(EvidenceError):
            verifier.verify(token, "registry", EXPECTED)
        with pytest.raises(jose.JwsError):
            jose.verify(token, _EC.public_key())
    assert evidence_digest("\u202e") == evidence_digest("\u202e")
