"""Hypothesis strategies for hostile input, built from the proto descriptors.

:func:`messages` walks a message's ``DESCRIPTOR`` and draws every field independently:
present or absent, adversarial strings, integers over the whole range of their wire type,
enum numbers the schema does not define, repeated fields and maps from empty to huge, nested
messages to a bounded depth. Nothing here knows the onceonly schema: a new field is fuzzed
the day it is added.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from onceonly.identity import make_dni, make_nie
from tests.conftest import HOUSING_CHECKS, LAW, ORG, PROCEDURE

F = FieldDescriptor

# Values that reach deeper than random text: real identifiers and nearly-real ones.
REALISTIC = (
    ORG,
    PROCEDURE,
    LAW,
    "HOUSING-RENT-SUBSIDY",
    "AEPD",
    "registry",
    "tax",
    "employment",
    "registry.residence/v1",
    "registry.household/v1",
    "tax.compliance/v1",
    "tax.income-below-threshold/v1",
    "employment.unemployment-status/v1",
    "employment.social-security-compliance/v1",
    "municipality_code",
    "threshold_eur",
    "28079",
    "18000",
    "GRANTED",
    "DENIED",
    "VERIFIED",
    "TIMEOUT",
    make_dni(12345678),
    make_nie("X", 1234567),
    "12345678A",
    "X1234567A",
    "AB1234567",
    *(cid for cid, _ in HOUSING_CHECKS),
)

NASTY = (
    "",
    " ",
    "   \t  ",
    "\n",
    "\r\n",
    "\x00",
    "a\x00b",
    "\x7f",
    "\x1b[31mred\x1b[0m",
    "\u202eevil",  # right-to-left override
    "\ufeff",  # byte order mark
    "\u200b",  # zero-width space
    "\u0301",  # a lone combining mark
    "\u00e9",
    "\u00df",
    "\ufb00",  # upper-cases to "FF"
    "\u0130",
    "\u0131",  # dotless i: upper-cases to ASCII "I"
    "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff3a",  # full-width digits
    "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
    "\U0001d7cf\U0001d7d0\U0001d7d1",
    "\U0001f642" * 3,
    "../../../etc/passwd",
    "C:\\Windows\\system32",
    "%s%s%s%n%x",
    "{0}{1}{__class__}",
    "' OR '1'='1' --",
    "'; DROP TABLE trace_records; --",
    "%_%",
    '"\\',
    "<script>alert(1)</script>",
    "${jndi:ldap://x/a}",
    "null",
    "None",
    "NaN",
    "-Infinity",
    "-1",
    "0",
    "1e309",
    "99999999999999999999999999999999",
    "0x1F",
    " 18000 ",
    "+18000",
    "18_000",
    "9999-12-31",
    "0000-00-00",
    "true",
    "TRUE",
    "[" * 200,
    "{" * 200,
    "A" * 33,
    "A" * 65,
    "A" * 101,
    "A" * 201,
    "A" * 501,
)

text_chars = st.characters(codec="utf-8")  # every code point but surrogates: protobuf strings are UTF-8
control_chars = st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Co"])


def long_text(max_repeat: int = 20_000) -> st.SearchStrategy[str]:
    """A short piece repeated up to ``max_repeat`` times: long strings without drawing each char."""
    return st.builds(
        lambda s, n: s * n, st.text(text_chars, min_size=1, max_size=4), st.integers(30, max_repeat)
    )


def texts(*, realistic: tuple[str, ...] = REALISTIC) -> st.SearchStrategy[str]:
    """Adversarial strings: any unicode, control characters, empty, very long, nearly valid."""
    return st.one_of(
        st.sampled_from(NASTY),
        st.sampled_from(realistic),
        st.text(text_chars, max_size=40),
        st.text(st.characters(codec="ascii"), max_size=40),
        st.text(control_chars, max_size=12),
        st.builds(lambda a, b: a + b, st.sampled_from(realistic), st.sampled_from(NASTY)),
        long_text(),
    )


_INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, 0, 1, -1, 2**31 - 1, 2**32 - 1, 256, 257, 500, 501) if low <= v <= high]
    return st.one_of(
        st.sampled_from(edges),
        st.integers(low, min(high, 1000) if low < 1000 else high),
        st.integers(low, high),
    )


def enum_numbers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    """Defined values mostly, and numbers the schema does not define (proto3 enums are open)."""
    defined = sorted(v.number for v in field.enum_type.values)
    return st.one_of(
        st.sampled_from(defined),
        st.sampled_from([-1, max(defined) + 1, 2**31 - 1, -(2**31)]),
        st.integers(-(2**31), 2**31 - 1),
    )


def timestamps() -> st.SearchStrategy[dict[str, int]]:
    """Seconds and nanos of a ``google.protobuf.Timestamp``: valid dates and out-of-range ones."""
    return st.fixed_dictionaries(
        {
            "seconds": st.one_of(
                st.integers(0, 4_102_444_800),  # 1970-2100
                st.sampled_from([-62_135_596_800, 253_402_300_799, -62_135_596_801, 253_402_300_800]),
                st.integers(-(2**63), 2**63 - 1),
            ),
            "nanos": st.one_of(st.just(0), st.integers(0, 999_999_999), st.integers(-(2**31), 2**31 - 1)),
        }
    )


def short_texts() -> st.SearchStrategy[str]:
    """Adversarial strings of at most a few dozen characters: what huge collections are made of."""
    return st.one_of(
        st.sampled_from([t for t in NASTY if len(t) <= 64]),
        st.sampled_from(REALISTIC),
        st.text(text_chars, max_size=12),
    )


def sized(
    element: st.SearchStrategy[Any],
    *,
    small: int = 4,
    huge: int = 2_000,
    cheap: st.SearchStrategy[Any] | None = None,
) -> st.SearchStrategy[list[Any]]:
    """Lists of ``element``: usually a few, sometimes up to ``huge`` copies of one drawn value.

    The huge ones are made of ``cheap`` values (default ``element``): a huge list of huge
    elements runs the test process out of memory before it tests anything.
    """
    return st.one_of(
        st.lists(element, max_size=small),
        st.builds(
            lambda v, n: [v] * n, cheap if cheap is not None else element, st.integers(small + 1, huge)
        ),
    )


def _scalar(field: FieldDescriptor, text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    t = field.type
    if t == F.TYPE_STRING:
        return text
    if t == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_ENUM:
        return enum_numbers(field)
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(width=64 if t == F.TYPE_DOUBLE else 32)
    low, high = _INT_RANGES[t]
    return integers(low, high)


def _map_entries(
    field: FieldDescriptor, depth: int, max_depth: int, text: st.SearchStrategy[str]
) -> st.SearchStrategy[dict[Any, Any]]:
    entry = field.message_type
    key_s = _scalar(entry.fields_by_name["key"], text)
    value_field = entry.fields_by_name["value"]
    value_s = (
        messages(value_field.message_type, depth=depth + 1, max_depth=max_depth, text=text)
        if value_field.type == F.TYPE_MESSAGE
        else _scalar(value_field, text)
    )
    small = st.dictionaries(key_s, value_s, max_size=4)
    if depth > 0 or entry.fields_by_name["key"].type != F.TYPE_STRING:
        return small  # huge maps at the top level only
    cheap = (
        messages(value_field.message_type, depth=max_depth, max_depth=max_depth, text=short_texts())
        if value_field.type == F.TYPE_MESSAGE
        else _scalar(value_field, short_texts())
    )
    huge = st.builds(lambda v, n: {f"k{i}": v for i in range(n)}, cheap, st.integers(17, 1_000))
    return st.one_of(small, huge)


def messages(
    descriptor: Descriptor,
    *,
    depth: int = 0,
    max_depth: int = 3,
    text: st.SearchStrategy[str] | None = None,
    overrides: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[Message]:
    """Random instances of the message ``descriptor`` describes (each field present or absent).

    ``overrides`` maps a field name of this message to a strategy for its value (a message
    instance, a list, a dict or a scalar, as the field needs).
    """
    cls = message_factory.GetMessageClass(descriptor)
    text = text if text is not None else texts()
    strategies: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        strategies[field.name] = (overrides or {}).get(field.name) or _field(field, depth, max_depth, text)

    @st.composite
    def build(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Message:
        msg = cls()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue  # absent
            set_field(msg, field, draw(strategies[field.name]))
        return msg

    return build()


def _field(
    field: FieldDescriptor, depth: int, max_depth: int, text: st.SearchStrategy[str]
) -> st.SearchStrategy[Any]:
    is_map = field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
    if is_map:
        return _map_entries(field, depth, max_depth, text)
    if field.type == F.TYPE_MESSAGE:
        if field.message_type.full_name == "google.protobuf.Timestamp":
            single: st.SearchStrategy[Any] = timestamps()
        elif depth >= max_depth:
            single = st.just(message_factory.GetMessageClass(field.message_type)())
        else:
            single = st.deferred(
                lambda: messages(field.message_type, depth=depth + 1, max_depth=max_depth, text=text)
            )
    else:
        single = _scalar(field, text)
    if not _is_repeated(field):
        return single
    if depth > 0:
        return st.lists(single, max_size=4)  # huge repeated fields at the top level only
    if field.type == F.TYPE_MESSAGE:
        cheap: st.SearchStrategy[Any] = messages(
            field.message_type, depth=1, max_depth=min(max_depth, 2), text=short_texts()
        )
        return sized(single, huge=300, cheap=cheap)
    return sized(single, huge=2_000, cheap=_scalar(field, short_texts()))


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def set_field(msg: Message, field: FieldDescriptor, value: Any) -> None:
    """Set ``field`` of ``msg`` to ``value`` (as drawn by :func:`messages`)."""
    name = field.name
    if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        target = getattr(msg, name)
        for k, v in value.items():
            if isinstance(v, Message):
                target[k].CopyFrom(v)
            else:
                target[k] = v
        return
    if _is_repeated(field):
        if field.type == F.TYPE_MESSAGE:
            getattr(msg, name).extend(_as_message(field, v) for v in value)
        else:
            getattr(msg, name).extend(value)
        return
    if field.type == F.TYPE_MESSAGE:
        getattr(msg, name).CopyFrom(_as_message(field, value))
        return
    setattr(msg, name, value)


def _as_message(field: FieldDescriptor, value: Any) -> Message:
    if isinstance(value, Message):
        return value
    return message_factory.GetMessageClass(field.message_type)(**value)


# --- raw wire bytes -------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


INVALID_UTF8 = (
    b"\xff",
    b"\xfe\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80",
    b"abc\x80",
    b"\xe2\x82",
)


def wire_payloads(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Bytes that claim to be a ``descriptor`` message: garbage, truncations, wrong wire types,
    invalid UTF-8 in string fields, runaway nesting, duplicated and unknown fields."""
    valid = messages(descriptor, max_depth=2, text=st.text(text_chars, max_size=20)).map(
        lambda m: m.SerializeToString()
    )
    numbers = [f.number for f in descriptor.fields] or [1]
    strings = [f.number for f in descriptor.fields if f.type == F.TYPE_STRING]
    nested = [f.number for f in descriptor.fields if f.type == F.TYPE_MESSAGE]
    any_number = st.one_of(st.sampled_from(numbers), st.integers(1, 2**29 - 1))

    wrong_type = st.builds(
        lambda n, wt, body: tag(n, wt) + body,
        st.sampled_from(numbers),
        st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]),
        st.binary(max_size=12),
    )
    bad_utf8 = (
        st.builds(
            lambda n, junk, prefix: length_delimited(n, prefix.encode() + junk),
            st.sampled_from(strings),
            st.sampled_from(INVALID_UTF8),
            st.text(max_size=5),
        )
        if strings
        else st.nothing()
    )
    deep = (
        st.builds(_nest, st.sampled_from(nested), st.integers(50, 5_000))
        if nested
        else st.builds(lambda n: tag(1, 3) * n, st.integers(50, 5_000))
    )
    overlong_length = st.builds(
        lambda n, claimed, body: tag(n, 2) + varint(claimed) + body,
        any_number,
        st.one_of(st.integers(1, 2**32), st.just(2**64 - 1)),
        st.binary(max_size=8),
    )
    groups = st.builds(lambda n, k: (tag(n, 3) * k) + (tag(n, 4) * (k - 1)), any_number, st.integers(1, 200))
    return st.one_of(
        st.binary(max_size=256),
        st.builds(lambda b, cut: b[: max(0, len(b) - cut)], valid, st.integers(1, 8)),
        st.builds(lambda a, b: a + b, valid, valid),  # a field given twice: last wins, messages merge
        st.builds(
            lambda b, n, junk: b + length_delimited(n, junk),
            valid,
            st.integers(1000, 2**29 - 1),
            st.binary(max_size=16),
        ),  # unknown fields
        wrong_type,
        bad_utf8,
        deep,
        overlong_length,
        groups,
        st.builds(lambda b, junk: b + junk, valid, st.binary(min_size=1, max_size=16)),
        st.builds(lambda v: varint(v), st.integers(0, 2**64 - 1)),
        st.builds(lambda f: struct.pack("<d", f), st.floats()),
    )


def _nest(number: int, levels: int) -> bytes:
    """``levels`` messages nested in field ``number``: beyond protobuf's recursion limit."""
    payload = b""
    for _ in range(levels):
        payload = length_delimited(number, payload)
    return payload
