"""Domain-name features for DNS-based IoT device identification.

Thompson, Mandalari, Haddadi, "Rapid IoT Device Identification at the Edge", DistributedML '21,
identify a device from the names it looks up in the first seconds after power-on. Raw query
names carry per-device identifiers (serial numbers, UUIDs, shard numbers) that never repeat
across devices of the same model, so this module turns a name into features that do:

- :func:`registered_domain` -- the organisation-level domain (public-suffix aware),
- :func:`masked_name` -- the full name with digit runs and hex ids masked,
- :func:`tokens` -- a bag of sub-label tokens plus the registered domain and public suffix.

The public-suffix list is the one bundled with the ``publicsuffixlist`` package; nothing here
touches the network.

Examples
--------
>>> registered_domain("www.bbc.co.uk")
'bbc.co.uk'
>>> masked_name("device-metrics-us-2.amazon.com")
'device-metrics-us-<d>.amazon.com'
>>> tokens("1.pool.ntp.org")
['<d>', 'pool', 'ntp', 'org', 'ntp.org']
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

__all__ = [
    "DIGITS",
    "HEX",
    "IP",
    "masked_name",
    "normalise",
    "public_suffix",
    "registered_domain",
    "tokens",
]

DIGITS = "<d>"
"""Token that replaces a run of decimal digits."""
HEX = "<h>"
"""Token that replaces a hex identifier (>= 8 hex characters with a digit, or a UUID)."""
IP = "<ip>"
"""Token that stands for an IP-literal "name" in :func:`tokens`."""

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# maximal hex runs; masked only when >= 8 long and holding a digit (so words such as
# "deadbeef" or "facade" survive, while "5f3a9c01" does not)
_HEX_RUN = re.compile(r"[0-9a-f]{8,}")
_DIGIT_RUN = re.compile(r"[0-9]+")
_SEPARATORS = re.compile(r"[.\-_]+")
# reverse-DNS zones: every name below them encodes an address, not an organisation
_REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")


@lru_cache(maxsize=2)
def _psl(private: bool) -> PublicSuffixList:
    # the bundled list (no ``source`` given) is read from the package; it never downloads
    return PublicSuffixList(only_icann=not private)


def normalise(name: str) -> str:
    """Lower-case ``name``, strip whitespace around labels and dots, and drop empty labels.

    Punycode (``xn--...``) labels are kept as they are; Unicode is lower-cased but not
    IDNA-encoded.

    Examples
    --------
    >>> normalise(" WWW.Example.COM. ")
    'www.example.com'
    >>> normalise("a..b")
    'a.b'
    """
    labels = [label.strip() for label in name.lower().split(".")]
    return ".".join(label for label in labels if label)


def _ip_literal(name: str) -> str | None:
    """The canonical text of ``name`` when it is an IPv4/IPv6 literal, else ``None``."""
    candidate = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def public_suffix(name: str, *, private: bool = False) -> str:
    """The public suffix of ``name`` (``"co.uk"`` for ``"www.bbc.co.uk"``).

    Parameters
    ----------
    name
        A DNS name, any case, with or without a trailing dot.
    private
        Whether to honour the PSL's private section (e.g. ``s3.amazonaws.com``).

    Returns
    -------
    str
        The suffix; ``""`` for an empty name or an IP literal. Unknown TLDs count as public
        suffixes (the PSL's ``*`` rule), so a single label is its own suffix.
    """
    norm = normalise(name)
    if not norm or _ip_literal(norm) is not None:
        return ""
    for zone in _REVERSE_ZONES:
        if norm == zone or norm.endswith("." + zone):
            return zone
    suffix = _psl(private).publicsuffix(norm)
    return suffix if suffix is not None else norm


def registered_domain(name: str, *, private: bool = False) -> str:
    """The registered ("second-level") domain of a DNS name: public suffix plus one label.

    Parameters
    ----------
    name
        A DNS query name, any case, with or without a trailing dot.
    private
        Honour the private section of the public-suffix list. Default ``False`` (ICANN
        section only): private rules such as ``*.compute.amazonaws.com``,
        ``execute-api.<region>.amazonaws.com`` or ``cloudfront.net`` make every customer
        deployment its own "registered domain", so the feature would carry per-deployment ids
        and split one cloud operator into thousands of rare values. For device identification
        the operator (``amazonaws.com``) generalises better; the full name is kept by
        :func:`masked_name`.

    Returns
    -------
    str
        The registered domain, lower-case, without trailing dot. Special cases:

        - empty / all-dot name: ``""``;
        - IP literal (``"8.8.8.8"``, ``"[::1]"``): the address in canonical form;
        - reverse DNS (``"4.3.2.1.in-addr.arpa"``, ``*.ip6.arpa``): the zone, ``"in-addr.arpa"``
          or ``"ip6.arpa"`` (the labels below are an address, not an organisation);
        - mDNS (``"_googlecast._tcp.local"``): ``"local"``;
        - a single label (``"localhost"``) or a bare public suffix (``"co.uk"``): the name.

    Examples
    --------
    >>> registered_domain("a1.b.amazonaws.com")
    'amazonaws.com'
    >>> registered_domain("x.s3.amazonaws.com", private=True)
    'x.s3.amazonaws.com'
    >>> registered_domain("4.3.2.1.in-addr.arpa")
    'in-addr.arpa'
    """
    norm = normalise(name)
    if not norm:
        return ""
    ip = _ip_literal(norm)
    if ip is not None:
        return ip
    for zone in _REVERSE_ZONES:
        if norm == zone or norm.endswith("." + zone):
            return zone
    if norm == "local" or norm.endswith(".local"):
        return "local"
    domain = _psl(private).privatesuffix(norm)
    return domain if domain is not None else norm


def _mask(text: str) -> str:
    """Mask UUIDs and long hex runs as ``<h>`` and digit runs as ``<d>`` in lower-case text."""
    text = _UUID.sub(HEX, text)
    text = _HEX_RUN.sub(lambda m: HEX if any(c.isdigit() for c in m[0]) else m[0], text)
    return _DIGIT_RUN.sub(DIGITS, text)


def masked_name(name: str) -> str:
    """The normalised full name with per-device identifiers masked.

    UUIDs (``8-4-4-4-12`` hex) and runs of >= 8 hex characters holding at least one digit
    become ``<h>``; remaining runs of digits become ``<d>``. Separators are kept.

    Examples
    --------
    >>> masked_name("E1234.dscb.akamaiedge.net.")
    'e<d>.dscb.akamaiedge.net'
    >>> masked_name("a2z1q9h5x3.execute-api.us-east-1.amazonaws.com")
    'a<d>z<d>q<d>h<d>x<d>.execute-api.us-east-<d>.amazonaws.com'
    >>> masked_name("5f3a9c01d2.iot.example.com")
    '<h>.iot.example.com'
    """
    return _mask(normalise(name))


def tokens(name: str, *, private: bool = False) -> list[str]:
    """Tokenise a DNS query name for bag-of-words features.

    The masked name (see :func:`masked_name`) is split on dots, dashes and underscores;
    then the registered domain and the public suffix are appended when they are not already
    tokens (an IP literal contributes the single token ``<ip>`` instead of its digits).
    Order follows the name; repeated sub-tokens (e.g. several ``<d>``) are kept.

    Parameters
    ----------
    name
        A DNS query name.
    private
        Passed to :func:`registered_domain` and :func:`public_suffix`.

    Examples
    --------
    >>> tokens("device-metrics-us-2.amazon.com")
    ['device', 'metrics', 'us', '<d>', 'amazon', 'com', 'amazon.com']
    >>> tokens("a2z1q9h5x3.execute-api.us-east-1.amazonaws.com")
    ['a<d>z<d>q<d>h<d>x<d>', 'execute', 'api', 'us', 'east', '<d>', 'amazonaws', 'com', \
'amazonaws.com']
    >>> tokens("e1234.dscb.akamaiedge.net")
    ['e<d>', 'dscb', 'akamaiedge', 'net', 'akamaiedge.net']
    >>> tokens("www.bbc.co.uk")
    ['www', 'bbc', 'co', 'uk', 'bbc.co.uk', 'co.uk']
    """
    norm = normalise(name)
    if not norm:
        return []
    if _ip_literal(norm) is not None:
        return [IP]
    out = [t for t in _SEPARATORS.split(_mask(norm)) if t]
    for extra in (registered_domain(norm, private=private), public_suffix(norm, private=private)):
        if extra and extra not in out:
            out.append(extra)
    return out
