"""Tests for phloem.iot.domains: registered domains, masking and tokens of DNS names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phloem.iot.domains import (
    DIGITS,
    HEX,
    IP,
    masked_name,
    normalise,
    public_suffix,
    registered_domain,
    tokens,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.bbc.co.uk", "bbc.co.uk"),
        ("WWW.BBC.CO.UK.", "bbc.co.uk"),
        ("a1.b.amazonaws.com", "amazonaws.com"),
        ("x.s3.amazonaws.com", "amazonaws.com"),
        ("abc.execute-api.us-east-1.amazonaws.com", "amazonaws.com"),
        ("e1234.dscb.akamaiedge.net", "akamaiedge.net"),
        ("1.pool.ntp.org", "ntp.org"),
        ("device-metrics-us-2.amazon.com", "amazon.com"),
        ("8.8.8.8", "8.8.8.8"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("4.3.2.1.in-addr.arpa", "in-addr.arpa"),
        ("b.a.9.8.ip6.arpa.", "ip6.arpa"),
        ("_googlecast._tcp.local", "local"),
        ("My-Printer.local.", "local"),
        ("localhost", "localhost"),
        ("wpad.", "wpad"),
        ("co.uk", "co.uk"),
        ("com", "com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a..b.example.com", "example.com"),
        ("", ""),
        (".", ""),
        ("...", ""),
    ],
)
def test_registered_domain(name: str, expected: str) -> None:
    assert registered_domain(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x.s3.amazonaws.com", "x.s3.amazonaws.com"),
        ("abc.execute-api.us-east-1.amazonaws.com", "abc.execute-api.us-east-1.amazonaws.com"),
        ("www.bbc.co.uk", "bbc.co.uk"),
    ],
)
def test_registered_domain_private_rules(name: str, expected: str) -> None:
    assert registered_domain(name, private=True) == expected


def test_public_suffix() -> None:
    assert public_suffix("www.bbc.co.uk") == "co.uk"
    assert public_suffix("x.s3.amazonaws.com") == "com"
    assert public_suffix("x.s3.amazonaws.com", private=True) == "s3.amazonaws.com"
    assert public_suffix("8.8.8.8") == ""
    assert public_suffix("") == ""
    assert public_suffix("localhost") == "localhost"


def test_normalise() -> None:
    assert normalise(" WWW.Example.COM. ") == "www.example.com"
    assert normalise("a..b") == "a.b"
    assert normalise("") == ""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("device-metrics-us-2.amazon.com", "device-metrics-us-<d>.amazon.com"),
        ("1.pool.ntp.org", "<d>.pool.ntp.org"),
        ("E1234.dscb.akamaiedge.net.", "e<d>.dscb.akamaiedge.net"),
        (
            "a2z1q9h5x3.execute-api.us-east-1.amazonaws.com",
            "a<d>z<d>q<d>h<d>x<d>.execute-api.us-east-<d>.amazonaws.com",
        ),
        ("5f3a9c01d2.iot.example.com", "<h>.iot.example.com"),
        ("0123456789.example.com", "<h>.example.com"),
        ("123e4567-e89b-12d3-a456-426614174000.devices.example.com", "<h>.devices.example.com"),
        ("deadbeefcafe.example.com", "deadbeefcafe.example.com"),  # hex letters only: a word
        ("abc1234.example.com", "abc<d>.example.com"),  # short hex-like run: digits masked
        ("time.google.com", "time.google.com"),
    ],
)
def test_masked_name(name: str, expected: str) -> None:
    assert masked_name(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "device-metrics-us-2.amazon.com",
            ["device", "metrics", "us", DIGITS, "amazon", "com", "amazon.com"],
        ),
        (
            "a2z1q9h5x3.execute-api.us-east-1.amazonaws.com",
            [
                *("a<d>z<d>q<d>h<d>x<d>", "execute", "api", "us", "east", DIGITS),
                *("amazonaws", "com", "amazonaws.com"),
            ],
        ),
        ("1.pool.ntp.org", [DIGITS, "pool", "ntp", "org", "ntp.org"]),
        ("e1234.dscb.akamaiedge.net", ["e<d>", "dscb", "akamaiedge", "net", "akamaiedge.net"]),
        ("www.bbc.co.uk", ["www", "bbc", "co", "uk", "bbc.co.uk", "co.uk"]),
        ("_googlecast._tcp.local", ["googlecast", "tcp", "local"]),
        ("4.3.2.1.in-addr.arpa", [DIGITS] * 4 + ["in", "addr", "arpa", "in-addr.arpa"]),
        (
            "uuid-123e4567-e89b-12d3-a456-426614174000.example.com",
            ["uuid", HEX, "example", "com", "example.com"],
        ),
        ("8.8.8.8", [IP]),
        ("localhost", ["localhost"]),
        ("", []),
        ("..", []),
    ],
)
def test_tokens(name: str, expected: list[str]) -> None:
    assert tokens(name) == expected


def test_tokens_private_keeps_deployment_domain() -> None:
    toks = tokens("x.s3.amazonaws.com", private=True)
    assert toks[-2:] == ["x.s3.amazonaws.com", "s3.amazonaws.com"]


def test_masking_identifies_devices_of_one_model() -> None:
    # per-device ids differ, the masked name does not
    a = masked_name("a3f9b2c1d4e5.iot.us-west-2.example.com")
    b = masked_name("9c8d7e6f5a4b.iot.us-west-2.example.com")
    assert a == b == "<h>.iot.us-west-<d>.example.com"


_dns_chars = st.text(alphabet=st.sampled_from("abcxyzf0189-_.[]:ABCXYZ "), max_size=60)


@given(st.one_of(st.text(max_size=80), _dns_chars))
def test_never_raise_on_arbitrary_strings(name: str) -> None:
    for private in (False, True):
        assert isinstance(registered_domain(name, private=private), str)
        assert isinstance(public_suffix(name, private=private), str)
        assert all(isinstance(t, str) and t for t in tokens(name, private=private))
    assert isinstance(masked_name(name), str)


@given(_dns_chars)
def test_properties_on_dns_like_strings(name: str) -> None:
    rd = registered_domain(name)
    assert registered_domain(rd) == rd  # idempotent
    assert registered_domain(name.upper()) == rd  # case-insensitive
    assert not rd.endswith(".")
    masked = masked_name(name)
    assert not any(c in "0123456789" for c in masked)
    assert masked_name(masked) == masked
    assert tokens(name) == tokens(name.upper() + ".")
