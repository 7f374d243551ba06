"""The drift report: a device whose names changed is called moved (by labels or by the model's
answers), unmoved devices are not, and the binomial tail is checked by brute force."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from iot_frames import dns, eth, ipv4, udp
from iot_synth import HIERARCHY, NAMES
from test_hostile_input import pcapng
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError
from phloem.iot.drift import DriftParams, binomial_tail, drift_report
from phloem.iot.identify import Identifier
from phloem.iot.labelled import KeyLabels, collect_labelled, load_key_labels

runner = CliRunner()
#: real OUIs (TP-Link, Wyze, WiZ, Sonos): the model learns each device's MAC vendor
MACS = {"plug": "9c:a2:f4:00:00:01", "cam": "d0:3f:27:00:00:03", "bulb": "d8:a0:11:00:00:02",
        "speaker": "38:42:0b:00:00:04"}  # fmt: skip
T0 = 1_700_000_000.0


@pytest.mark.parametrize(("k", "n", "p"), [(0, 5, 0.1), (3, 10, 0.01), (10, 10, 0.5), (4, 30, 0.2)])
def test_binomial_tail_by_brute_force(k: int, n: int, p: float) -> None:
    want = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
    assert binomial_tail(k, n, p) == pytest.approx(want, rel=1e-9, abs=1e-300)


def capture(mac: str, names: list[str], t0: float, rng: np.random.Generator) -> bytes:
    def frame(name: str) -> bytes:
        return eth(mac, "02:00:00:00:00:fe", ipv4(udp(40000, 53, dns(name)), "10.0.0.9", "8.8.8.8"))

    times = [t0 + 1.5 * i + float(rng.uniform(0, 0.5)) * (i > 0) for i in range(len(names))]
    return pcapng([(t, frame(n)) for t, n in zip(times, names, strict=True)])


@pytest.fixture(scope="module")
def identifier(tmp_path_factory: pytest.TempPathFactory) -> Identifier:
    """Trained on captures made as the recent ones are (jittered starts), before the drift."""
    root = tmp_path_factory.mktemp("before")
    rng = np.random.default_rng(0)
    for i in range(40):
        for dev, mac in MACS.items():
            start = T0 - 86_400 * 10 + 600 * i + float(rng.uniform(0, 1))
            (root / f"{dev}-{i}.pcapng").write_bytes(capture(mac, NAMES[dev], start, rng))
    labels = KeyLabels(dict(zip(MACS.values(), MACS, strict=True)), dict(HIERARCHY))
    events = collect_labelled(sorted(root.iterdir()), labels).events
    return Identifier.train(events, hierarchy=HIERARCHY, checkpoints=(0, 2, 10))


@pytest.fixture
def recent(tmp_path: Path) -> Path:
    """Eight power cycles of each device; the camera's firmware now queries new names."""
    root = tmp_path / "recent"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        for dev, mac in MACS.items():
            names = NAMES[dev]
            if dev == "cam":
                names = ["pool.ntp.org", f"fw{i}.newcloud.example", "cfg.camco.net", "x.newcdn.io"]
            (root / f"{dev}-{i}.pcapng").write_bytes(capture(mac, names, T0 + 600 * i, rng))
    (root / "broken.pcap").write_bytes(b"")
    (tmp_path / "labels.csv").write_text(
        "mac,device\n" + "".join(f"{m},{d}\n" for d, m in MACS.items()) + "02:00:00:00:00:09,x\n"
    )
    return root


def test_a_device_with_new_names_has_moved(identifier: Identifier, recent: Path) -> None:
    files = sorted(recent.iterdir())
    labels = load_key_labels(recent.parent / "labels.csv")
    for named in (labels, None):
        report = drift_report(identifier, files, labels=named)
        assert report.window_s == 10.0 and report.files == len(files) - 1
        assert [p for p, _ in report.skipped_files] == [str(recent / "broken.pcap")]
        assert [d.device for d in report.moved] == ["cam"], report.devices
        cam = report.moved[0]
        assert cam.clients == 8 and cam.flagged >= 6
        assert {n for n, _ in cam.new_names} & {"x.newcdn.io", "fw<d>.newcloud.example"}
        others = [d for d in report.devices if d.device != "cam"]
        assert {d.device for d in others} == {"plug", "bulb", "speaker"}
        assert all(d.flagged <= 1 and not d.moved and d.why == "" for d in others), others
        assert "cam" in report.advice() and "phloem iot train" in report.advice()
    assert report.grouped_by == "answers" and "--labels" in report.advice()


def test_no_drift_no_advice(identifier: Identifier, recent: Path) -> None:
    files = [f for f in sorted(recent.iterdir()) if not f.name.startswith("cam")]
    report = drift_report(identifier, files)
    assert report.moved == [] and "no known device has moved" in report.advice()


def test_few_clients_are_never_called_moved(identifier: Identifier, recent: Path) -> None:
    files = sorted(recent.glob("cam-*.pcapng"))[:2]
    (cam,) = drift_report(identifier, files).devices
    assert not cam.moved and "only 2 client(s)" in cam.why


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"window_s": float("nan")}, "window_s"),
        ({"window_s": -1.0}, "window_s"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": float("inf")}, "alpha"),
        ({"max_confidence_drop": 2.0}, "max_confidence_drop"),
        ({"min_clients": 0}, "min_clients"),
    ],
)
def test_bad_drift_params_name_their_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        DriftParams(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_drift_cli(identifier: Identifier, recent: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.npz"
    identifier.save(model)
    out = tmp_path / "drift.json"
    labels = str(recent.parent / "labels.csv")
    res = runner.invoke(app, ["iot", "drift", str(recent), "--model", str(model),
                              "--labels", labels, "--json", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "1 known device(s) have moved: cam" in flat and "skipped 1" in flat
    doc = json.loads(out.read_text())
    assert doc["grouped_by"] == "labels" and doc["devices"][0]["device"] == "cam"
    for args, named in (
        (["--alpha", "2"], "'--alpha'"),
        (["--window", "nan"], "'--window'"),
        (["--labels", str(tmp_path / "nope.csv")], "'--labels'"),
    ):
        res = runner.invoke(app, ["iot", "drift", str(recent), "--model", str(model), *args])
        assert res.exit_code == 2 and named in " ".join(res.output.split()), res.output
    res = runner.invoke(app, ["iot", "drift", str(tmp_path / "none"), "--model", str(model)])
    assert res.exit_code == 2 and "'PATH'" in res.output


def test_clients_of_a_vendor_no_known_device_has_are_new_devices_not_drift(
    identifier: Identifier, recent: Path, tmp_path: Path
) -> None:
    files = sorted(recent.glob("plug-*.pcapng"))
    stranger = tmp_path / "edimax.pcapng"  # a plug's names from an Edimax MAC
    stranger.write_bytes(capture("74:da:38:00:00:01", NAMES["plug"], T0, np.random.default_rng(2)))
    report = drift_report(identifier, [*files, stranger])
    assert report.foreign == 1 and report.clients == len(files) + 1
    (plug,) = report.devices
    assert plug.device == "plug" and plug.clients == len(files) and not plug.moved
