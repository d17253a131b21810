"""RFC 8785 (JSON Canonicalization Scheme) against the RFC's own examples and number vectors."""

from __future__ import annotations

import json
import struct

import pytest

from translog.jcs import NotCanonicalisable, canonical


def test_member_order_is_by_utf16_code_units():
    """RFC 8785 section 3.2.3: U+1F600 (a surrogate pair) sorts before U+FB33, unlike by code point."""
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert sorted(value) != keys  # Python's own order differs: why json.dumps(sort_keys=True) is not JCS


def test_the_rfc_example_document():
    """RFC 8785 section 3.2.4 (its input parsed as JSON, so numbers are doubles as in the RFC)."""
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], '
        '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical(json.loads(text)) == expected.encode("utf-8")


@pytest.mark.parametrize(
    "bits, text",
    [
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_number_vectors_of_appendix_b(bits, text):
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical(value) == text.encode()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"n": float("-inf")}, 10**20, {1: "key"}, object()])
def test_values_outside_jcs_are_refused(value):
    with pytest.raises(NotCanonicalisable):
        canonical(value)


def test_strings_escape_only_what_json_requires():
    assert canonical(["\u00e9\u2028\x7f", '\x00\x1f\b\t\n\f\r"\\/']) == (
        '["\u00e9\u2028\x7f","\\u0000\\u001f\\b\\t\\n\\f\\r\\"\\\\/"]'
    ).encode("utf-8")
