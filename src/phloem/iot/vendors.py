"""Open-world manufacturer: who made a device the model was never trained on, and why we say so.

The classifier can only name devices it has seen; for an unknown device its manufacturer
guess is a guess among the trained manufacturers. Two kinds of evidence generalise across
labs and name manufacturers the model never saw:

- **the MAC's OUI**, looked up in the IEEE registry that ``netaddr`` ships and maintains
  (``netaddr/eui/oui.txt``), when the client is keyed by a MAC (a capture on the device's
  link, Pi-hole's FTL network table). A locally administered (randomised) MAC has no OUI;
  the OUIs of radio-module makers (Espressif, AMPAK, Tuya, ...: :data:`MODULE_MAKERS`) say
  who made the Wi-Fi chip, not the device, and never name a manufacturer;
- **vendor tokens of the queried names**: a registered domain's label that only one
  manufacturer's devices query in the training labels (``tplinkcloud`` -> TP-Link), or that
  spells a vendor of the OUI registry, whole or with a usual affix (``myedimax`` -> Edimax,
  ``wyzecam`` -> Wyze). Labels that devices of several manufacturers query (``amazonaws``,
  ``google``, ``ntp``) and the well-known shared services of :data:`SHARED` are never
  evidence.

:class:`VendorIndex` holds what training taught (the names learned per manufacturer, the OUI
vendors seen per device); :meth:`VendorIndex.evidence` lists what one client shows, strongest
first. The OUI vendors seen per device also back unknown detection: a client whose MAC vendor
was never seen for the device the model names is not that device.

Vendors are compared by their *brand key* (:func:`brand_key`): the first distinctive word of
the name, lower-case, letters and digits only (``"TP-LINK TECHNOLOGIES CO.,LTD."`` and
``"TP-Link"`` are both ``tplink``; ``"Chengdu Meross Technology Co., Ltd."`` is ``meross``).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from phloem.iot.domains import registered_domain
from phloem.iot.events import Event, Query

__all__ = [
    "MODULE_MAKERS",
    "SHARED",
    "Evidence",
    "VendorIndex",
    "brand_key",
    "oui_vendor",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: words that do not name a company: places, legal forms, generic business words
_STOP = _words(
    """
    the a an and of de la le el
    co corp corporation company companies inc incorporated ltd limited llc lp plc gmbh ag sa
    sas srl spa bv nv oy ab as kg pte pty sdn bhd kk jsc ooo
    technology technologies tech techonology electronic electronics electric electrical
    international intl global group holding holdings industrial industries industry
    communication communications network networks systems system solutions solution
    science sciences information digital intelligent intelligence smart products product
    manufacturing manufacture enterprise enterprises trading services service devices
    device mobile software hardware computer computers
    shenzhen beijing shanghai hangzhou guangzhou chengdu dongguan xiamen zhejiang jiangsu
    fujian guangdong suzhou ningbo qingdao wuhan nanjing tianjin zhuhai foshan zhongshan
    huizhou hefei chongqing sichuan shandong jiangxi hunan hubei anhui henan liaoning
    china chinese taiwan hong kong japan korea usa america american europe
    """
)

MODULE_MAKERS = _words(
    """
    espressif ampak azurewave tuya altobeam realtek mediatek murata universal honhai
    foxconn texas silicon cypress bilian gaoshengda quectel broadcom qualcomm liteon fnlink
    ailink wistron pegatron inventec compal askey sercomm nordic infineon intel fugui
    cloud gainspan microchip lumi usi hiflying hisilicon beken bouffalo winnermicro
    actions allwinner rockchip amlogic ralink atheros marvell
    """
)
"""Brand keys of radio-module and chipset makers: their OUI names the chip, not the device
(``cloud``: Foxconn's "Cloud Network Technology"; ``lumi``: Lumi United, maker of modules
for Xiaomi's and Aqara's brands)."""

SHARED = _words(
    """
    amazonaws amazon cloudfront akamai akamaiedge akamaized akamaihd edgekey edgesuite
    google googleapis gstatic googleusercontent gvt1 gvt2 googlevideo youtube doubleclick
    ntp pool apple icloud microsoft windows msftconnecttest azure azureedge live bing
    cloudflare fastly fastlylb aliyun alibaba alicdn aliyuncs tencent qq baidu
    facebook instagram whatsapp spotify netflix digicert letsencrypt sectigo globalsign
    github gravatar wordpress cdn77 azurefd trafficmanager elasticbeanstalk herokuapp
    arpa local localhost home lan
    """
)
"""Registered-domain labels of services devices of every maker use (clouds, CDNs, clocks,
certificate checks, connectivity checks): never vendor evidence."""

#: affixes a vendor's own domain adds to its brand (tplink+cloud, my+edimax, wyze+cam)
_AFFIXES = (
    "cloud", "my", "iot", "api", "app", "apps", "smart", "home", "net", "connect", "online",
    "service", "services", "hub", "dev", "cam", "live", "link", "life", "go", "get", "the",
    "world", "global", "inc", "corp", "tech", "labs", "lab", "us", "eu", "cn", "s",
)  # fmt: skip
_PLACEHOLDERS = frozenset({"ieee", "private", "iab"})  # registry entries naming no one
_LEGAL = re.compile(
    r"[\s,]+(co\.?|corp\.?|corporation|company|inc\.?|incorporated|ltd\.?|limited|llc|gmbh|"
    r"ag|s\.?a\.?|b\.?v\.?|pte\.?|pty\.?|plc|oy|ab)\b.*$",
    re.IGNORECASE,
)
_MIN_KEY = 3
_MIN_TOKEN = 4  # a vendor key found inside a domain label must be at least this long
_MIN_SUPPORT = 2  # a label learned as one manufacturer's must be queried in this many events
_NOT_VENDORS = (".edu", ".gov", ".mil", ".int")  # registrants that make no devices


def brand_key(name: str) -> str:
    """The first distinctive word of a company or brand name (see the module docstring);
    ``""`` when none."""
    for word in re.findall(r"[a-z0-9][a-z0-9&'.\-]*", name.lower()):
        key = re.sub(r"[^a-z0-9]", "", word)
        if len(key) >= _MIN_KEY and key not in _STOP:
            return key
    return ""


def display_name(org: str) -> str:
    """A registry organisation without its legal form: ``"Edimax Technology Co. Ltd."`` ->
    ``"Edimax Technology"``."""
    short = _LEGAL.sub("", org.strip()).strip(" ,.")
    return short or org.strip()


def _mac_oui(key: str) -> str | None:
    """``"aa:bb:cc"`` of a universally administered unicast MAC key; else ``None``."""
    parts = key.lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        return None
    try:
        first = int(parts[0], 16)
        int("".join(parts), 16)
    except ValueError:
        return None
    if first & 0x03:  # multicast, or locally administered (randomised)
        return None
    return ":".join(parts[:3])


@lru_cache(maxsize=4096)
def _oui_org(oui: str) -> str:
    from netaddr import EUI, NotRegisteredError

    try:
        return str(EUI(oui + ":00:00:00").oui.registration().org).strip()
    except (NotRegisteredError, ValueError, IndexError, KeyError):
        return ""


def oui_vendor(key: str) -> tuple[str, str] | None:
    """``(oui, organisation)`` of a MAC key from the IEEE registry; ``None`` for an IP key, a
    randomised MAC or an unregistered OUI."""
    oui = _mac_oui(key)
    if oui is None:
        return None
    org = _oui_org(oui)
    if not org or brand_key(org) in _PLACEHOLDERS:
        return None
    return oui, org


@lru_cache(maxsize=1)
def _registry_brands() -> dict[str, str]:
    """Brand key -> an organisation of the OUI registry (the first seen), module makers and
    keys shorter than :data:`_MIN_TOKEN` left out."""
    from importlib.resources import files

    text = (files("netaddr.eui") / "oui.txt").read_bytes().decode("utf-8", "replace")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if "(hex)" not in line:
            continue
        org = line.split("(hex)", 1)[1].strip()
        key = brand_key(org)
        if len(key) >= _MIN_TOKEN and key not in MODULE_MAKERS and key not in _PLACEHOLDERS:
            out.setdefault(key, org)
    return out


@lru_cache(maxsize=65536)
def _label(name: str) -> str:
    """The first label of a name's registered domain (``a.tplinkcloud.com`` ->
    ``tplinkcloud``); ``""`` for IP literals and special zones."""
    domain = registered_domain(name)
    if not domain or "." not in domain or domain.endswith((".arpa", ".local")):
        return ""
    if domain[0].isdigit() and domain[-1].isdigit():  # an IPv4 literal
        return ""
    return domain.split(".", 1)[0].replace("-", "")


def _spelled(label: str, keys: Mapping[str, str]) -> str | None:
    """The vendor key ``label`` spells: whole, or with affixes of :data:`_AFFIXES` around it."""
    if label in keys:
        return label
    for pre in ("", *_AFFIXES):
        if not label.startswith(pre):
            continue
        rest = label[len(pre) :]
        for suf in ("", *_AFFIXES):
            if (pre or suf) and rest.endswith(suf):
                core = rest[: len(rest) - len(suf)] if suf else rest
                if len(core) >= _MIN_TOKEN and core in keys:
                    return core
    return None


@dataclass(frozen=True)
class Evidence:
    """One reason to name a manufacturer.

    ``by`` is ``"oui"`` (the MAC's registered vendor), ``"names"`` (a domain that only this
    manufacturer's training devices query) or ``"vendor names"`` (a domain spelling a vendor
    of the OUI registry); ``detail`` says which OUI or domain.
    """

    manufacturer: str
    by: str
    detail: str

    @property
    def key(self) -> str:
        return brand_key(self.manufacturer)

    def __str__(self) -> str:
        return f"{self.by}: {self.detail}"


@dataclass
class VendorIndex:
    """What training taught about manufacturers.

    Attributes
    ----------
    names
        Domain label -> manufacturer, for labels that only one manufacturer's devices queried
        (in at least two events).
    shared
        Domain labels that devices of several manufacturers queried (never evidence).
    device_ouis
        Device -> the brand keys of the OUI vendors of its training clients (MAC keys only).
    manufacturers
        Brand key -> manufacturer as the labels spell it.
    """

    names: dict[str, str] = field(default_factory=dict)
    shared: frozenset[str] = frozenset()
    device_ouis: dict[str, frozenset[str]] = field(default_factory=dict)
    manufacturers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def learn(
        cls, events: Iterable[Event], hierarchy: Mapping[str, tuple[str, str]]
    ) -> VendorIndex:
        """Learn from labelled training events and the device -> (manufacturer, category) map."""
        makers: defaultdict[str, set[str]] = defaultdict(set)
        support: Counter[str] = Counter()  # events querying each label
        ouis: defaultdict[str, set[str]] = defaultdict(set)
        for e in events:
            device = str(e.device)
            maker = hierarchy.get(device, ("", ""))[0]
            for label in {_label(q.name) for q in e.queries} - {""}:
                if maker and maker != "?":
                    makers[label].add(maker)
                    support[label] += 1
            vendor = oui_vendor(e.key)
            if vendor is not None:
                ouis[device].add(brand_key(vendor[1]))
        names = {
            label: next(iter(ms))
            for label, ms in sorted(makers.items())
            if len(ms) == 1
            and label not in SHARED
            and len(label) >= _MIN_KEY
            and support[label] >= _MIN_SUPPORT
        }
        shared = frozenset(label for label, ms in makers.items() if len(ms) > 1)
        manufacturers = {brand_key(m): m for m, _ in sorted(hierarchy.values()) if m and m != "?"}
        manufacturers.pop("", None)
        return cls(names, shared, {d: frozenset(v) for d, v in sorted(ouis.items())}, manufacturers)

    # --- persistence (JSON in the model file) -------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "shared": sorted(self.shared),
            "device_ouis": {d: sorted(v) for d, v in self.device_ouis.items()},
            "manufacturers": self.manufacturers,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VendorIndex:
        return cls(
            {str(k): str(v) for k, v in data.get("names", {}).items()},
            frozenset(str(s) for s in data.get("shared", ())),
            {str(d): frozenset(map(str, v)) for d, v in data.get("device_ouis", {}).items()},
            {str(k): str(v) for k, v in data.get("manufacturers", {}).items()},
        )

    # --- evidence -------------------------------------------------------------------------

    def _known_as(self, org: str) -> str:
        """A registry organisation as the labels spell its manufacturer, if they know it."""
        return self.manufacturers.get(brand_key(org), display_name(org))

    def evidence(self, key: str, queries: Sequence[Query]) -> list[Evidence]:
        """What ``key`` (a MAC or IP) and its ``queries`` say about the manufacturer,
        strongest first: the OUI vendor (unless a module maker), then the names only one
        training manufacturer queries, then names that spell an OUI-registry vendor; one
        entry per manufacturer, the first reason found."""
        found: list[Evidence] = []
        vendor = oui_vendor(key)
        if vendor is not None and brand_key(vendor[1]) not in MODULE_MAKERS:
            oui, org = vendor
            found.append(Evidence(self._known_as(org), "oui", f"{oui} {org}"))
        labels = list(dict.fromkeys(_label(q.name) for q in queries))
        for label in labels:
            if label in self.names:
                found.append(Evidence(self.names[label], "names", _domain_of(label, queries)))
        registry: dict[str, str] | None = None
        for label in labels:
            if not label or label in self.shared or label in SHARED or label in self.names:
                continue
            if _domain_of(label, queries).endswith(_NOT_VENDORS):
                continue
            if registry is None:
                registry = {**_registry_brands(), **self.manufacturers}
            hit = _spelled(label, registry)
            if hit is not None:
                maker = self.manufacturers.get(hit) or display_name(registry[hit])
                found.append(Evidence(maker, "vendor names", _domain_of(label, queries)))
        seen: set[str] = set()
        unique = []
        for ev in found:
            if ev.key not in seen:
                seen.add(ev.key)
                unique.append(ev)
        return unique

    def consistent(
        self, key: str, classes: Sequence[str]
    ) -> tuple[npt.NDArray[np.bool_], str] | None:
        """Which of ``classes`` a client keyed ``key`` can be, going by its MAC vendor: those
        seen with that vendor in training and those trained without a MAC; and the vendor's
        name. ``None`` when the key tells nothing (an IP, a randomised MAC, an unregistered
        OUI, or no device trained with a MAC)."""
        vendor = oui_vendor(key) if self.device_ouis else None
        if vendor is None:
            return None
        brand = brand_key(vendor[1])
        allowed = np.array(
            [brand in self.device_ouis.get(c, (brand,)) for c in classes], dtype=bool
        )
        return allowed, display_name(vendor[1])


def _domain_of(label: str, queries: Sequence[Query]) -> str:
    """The registered domain of the first query whose label is ``label``."""
    for q in queries:
        if _label(q.name) == label:
            return registered_domain(q.name)
    return label
