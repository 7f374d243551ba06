"""Open-world manufacturer evidence: OUIs from netaddr's IEEE registry, names learned from the
labels, names spelling a registry vendor; and the unknown flag a foreign MAC vendor raises."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from iot_synth import HIERARCHY, corpus, event

from phloem.iot.events import Event, Query
from phloem.iot.identify import Identifier
from phloem.iot.vendors import (
    _AFFIXES,
    MODULE_MAKERS,
    VendorIndex,
    _spelled,
    brand_key,
    display_name,
    oui_vendor,
)

TPLINK = "9c:a2:f4:6e:de:25"  # TP-Link Corporation Limited
EDIMAX = "74:da:38:00:00:01"  # Edimax Technology Co. Ltd.
ESPRESSIF = "0c:8b:95:a0:e2:cc"  # Espressif Inc.: a module maker
WYZE = "d0:3f:27:82:15:5b"  # Wyze Labs Inc


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("TP-LINK TECHNOLOGIES CO.,LTD.", "tplink"),
        ("TP-Link", "tplink"),
        ("Chengdu Meross Technology Co., Ltd.", "meross"),
        ("Shenzhen Intellirocks Tech. Co. Ltd.", "intellirocks"),
        ("Amazon Technologies Inc.", "amazon"),
        ("iRobot Corporation", "irobot"),
        ("The Co. Ltd.", ""),
    ],
)
def test_brand_keys(name: str, key: str) -> None:
    assert brand_key(name) == key


def test_display_name_drops_the_legal_form() -> None:
    assert display_name("Edimax Technology Co. Ltd.") == "Edimax Technology"
    assert display_name("Google, Inc.") == "Google"
    assert display_name("WiZ") == "WiZ"


def test_oui_lookup_in_the_registry() -> None:
    hit = oui_vendor(TPLINK)
    assert hit is not None and hit[0] == "9c:a2:f4" and brand_key(hit[1]) == "tplink"
    vendor = oui_vendor(EDIMAX)
    assert vendor is not None and brand_key(vendor[1]) == "edimax"
    assert oui_vendor("192.168.1.5") is None
    assert oui_vendor("02:11:22:33:44:55") is None  # locally administered (randomised)
    assert oui_vendor("01:00:5e:00:00:01") is None  # multicast
    assert oui_vendor("zz:zz:zz:zz:zz:zz") is None
    assert oui_vendor("not a mac") is None


def _spelled_reference(label: str, keys: set[str]) -> str | None:
    """Every split of ``label`` into affix + core + affix, by brute force."""
    if label in keys:
        return label
    affixes = ("", *_AFFIXES)
    for i, j in itertools.combinations(range(len(label) + 1), 2):
        pre, core, suf = label[:i], label[i:j], label[j:]
        if (pre or suf) and pre in affixes and suf in affixes and len(core) >= 4 and core in keys:
            return core
    return None


KEYS = {"tplink", "edimax", "wyze", "meross", "linkplay", "mycam"}


@given(
    st.lists(
        st.sampled_from(["my", "tplink", "cloud", "edimax", "wyze", "cam", "s", "x", "link"]),
        min_size=1,
        max_size=4,
    )
)
def test_spelled_finds_a_vendor_as_brute_force_does(parts: list[str]) -> None:
    label = "".join(parts)
    got = _spelled(label, dict.fromkeys(KEYS, ""))
    want = _spelled_reference(label, KEYS)
    # both find a vendor or neither; the fast search may pick another split's vendor
    assert (got is None) == (want is None), label
    if got is not None:
        assert got in KEYS and got in label


def _mac_events(device: str, mac: str, names: list[str], n: int, maker: str = "") -> list[Event]:
    qs = tuple(Query(float(i), name, 1, "8.8.8.8") for i, name in enumerate(names))
    return [Event(mac, 1.7e9 + k, qs, device, day="2023-10-19") for k in range(n)]


def test_learning_keeps_one_makers_names_and_drops_shared_ones() -> None:
    events = [
        *_mac_events("tapo", TPLINK, ["a.tplinkcloud.com", "x.amazonaws.com", "n.vendorx.io"], 3),
        *_mac_events("cam", WYZE, ["api.wyzecam.com", "n.vendorx.io", "once.rare.net"], 3),
        *_mac_events("cam", WYZE, ["solo.single.net"], 1),
    ]
    idx = VendorIndex.learn(events, {"tapo": ("TP-Link", "plug"), "cam": ("Wyze", "camera")})
    assert idx.names == {"tplinkcloud": "TP-Link", "wyzecam": "Wyze", "rare": "Wyze"}
    assert "vendorx" in idx.shared and "single" not in idx.names  # seen once: no support
    assert idx.device_ouis == {"tapo": frozenset({"tplink"}), "cam": frozenset({"wyze"})}
    assert VendorIndex.from_dict(idx.to_dict()) == idx


def test_evidence_order_and_what_never_names() -> None:
    idx = VendorIndex(names={"tplinkcloud": "TP-Link"}, manufacturers={"tplink": "TP-Link"})
    qs = [Query(0.0, "a.tplinkcloud.com", 1, ""), Query(1.0, "x.myedimax.com", 1, "")]
    evs = idx.evidence(TPLINK, qs)
    assert [(e.by, e.manufacturer) for e in evs] == [
        ("oui", "TP-Link"), ("vendor names", "Edimax Technology"),
    ]  # fmt: skip  # TP-Link once, by its strongest evidence; the labels' spelling
    assert str(evs[1]) == "vendor names: myedimax.com"
    # a module maker's OUI names nobody; shared services and arpa zones are no evidence
    assert "espressif" in MODULE_MAKERS
    shared = [Query(0.0, n, 1, "") for n in ("a.amazonaws.com", "1.0.0.10.in-addr.arpa",
                                               "time.cornell.edu", "8.8.8.8")]  # fmt: skip
    assert idx.evidence(ESPRESSIF, shared) == []
    assert idx.evidence("10.0.0.5", [qs[0]])[0].by == "names"


def test_a_mac_vendor_narrows_the_devices_a_client_can_be() -> None:
    idx = VendorIndex(device_ouis={"cam": frozenset({"wyze"}), "plug": frozenset({"tplink"})})
    classes = ["cam", "plug", "log_only"]  # log_only: trained without a MAC
    fit = idx.consistent(WYZE, classes)
    assert fit is not None and fit[0].tolist() == [True, False, True] and fit[1] == "Wyze Labs"
    fit = idx.consistent(EDIMAX, classes)
    assert fit is not None and fit[0].tolist() == [False, False, True]
    assert idx.consistent("10.0.0.5", classes) is None  # an IP: nothing to narrow
    assert idx.consistent("02:00:00:00:00:01", classes) is None  # randomised
    assert VendorIndex().consistent(WYZE, classes) is None  # no device trained with a MAC


MACS = {"plug": TPLINK, "cam": WYZE, "bulb": "d8:a0:11:49:ef:50", "speaker": "38:42:0b:68:76:30"}


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    events = [replace(e, key=MACS[str(e.device)]) for e in corpus(per_day=6)]
    return Identifier.train(events, hierarchy=HIERARCHY, checkpoints=(0, 2, 10),
                            target_false_unknown=0.02)  # fmt: skip


def test_an_edimax_plug_speaking_like_a_known_camera_is_unknown_and_named_edimax(
    identifier: Identifier, tmp_path: Path
) -> None:
    cam = replace(event("cam", np.random.default_rng(1)), key=WYZE)
    known = identifier.answer(cam, 10.0)
    assert known.device == "cam" and not known.unknown
    assert known.manufacturer is not None and known.manufacturer.by == "model"
    assert known.evidence[0].startswith("oui: d0:3f:27")
    stranger = replace(cam, key=EDIMAX)
    a = identifier.answer(stranger, 10.0)
    assert a.unknown and a.device is None
    assert "MAC vendor Edimax Technology: no known device with it fits" in a.why_unknown
    assert a.manufacturer is not None and a.manufacturer.label == "Edimax Technology"
    assert a.manufacturer.probability is None and a.manufacturer.by.startswith("oui: 74:da:38")
    d = a.to_dict()
    assert d["manufacturer"] == {"label": "Edimax Technology", "p": None, "by": a.manufacturer.by}
    # the vendors survive a save and load
    identifier.save(tmp_path / "m.npz")
    again = Identifier.load(tmp_path / "m.npz")
    assert again.vendors == identifier.vendors
    assert again.answer(stranger, 10.0) == a


def test_an_unknown_device_without_evidence_names_no_manufacturer(identifier: Identifier) -> None:
    ghost = replace(event("ghost", np.random.default_rng(2)), key="02:00:00:00:00:77")
    a = identifier.answer(ghost, 10.0)
    assert a.unknown and a.manufacturer is None and a.evidence == ()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("thresholds", [[1]]),
        ("thresholds", [["a", "b", "c"]]),
        ("checkpoints", ["nan"]),
        ("checkpoints", [10.0, 0.0, 2.0]),
        ("confidence", 7),
        ("device_queries", {"plug": 5}),
        ("vendors", [1, 2]),
        ("vendors", {"device_ouis": {"plug": 7}}),
        ("hierarchy", {"plug": 3}),
        ("trained_on", [1]),
    ],
)
def test_a_damaged_or_forged_model_file_is_one_clear_error(
    identifier: Identifier, tmp_path: Path, key: str, value: object
) -> None:
    from phloem.core.errors import PhloemError
    from phloem.iot.models import NumpyModel

    path = tmp_path / "m.npz"
    identifier.save(path)
    m = NumpyModel.load(path)
    m.extra[key] = value
    m.save(path)
    with pytest.raises(PhloemError, match="not a usable phloem identifier"):
        Identifier.load(path)
