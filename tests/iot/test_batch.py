"""Many files in one process: folders, globs, per-window answers, summaries, and a bad file
that does not stop the batch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from iot_frames import dns, eth, ipv4, udp
from iot_synth import HIERARCHY, NAMES, corpus
from test_hostile_input import pcapng
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError
from phloem.iot.batch import BatchParams, expand_inputs, identify_paths, write_summary
from phloem.iot.clients import IdentifyParams, identify_clients
from phloem.iot.identify import Identifier, level_dict
from phloem.iot.sources import open_observations

runner = CliRunner()
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def identifier() -> Identifier:
    return Identifier.train(corpus(per_day=6), hierarchy=HIERARCHY, checkpoints=(0, 2, 10),
                            target_false_unknown=0.05)  # fmt: skip


def device_capture(device: str, mac: str, t0: float = T0) -> bytes:
    def frame(name: str) -> bytes:
        return eth(mac, "02:00:00:00:00:fe", ipv4(udp(40000, 53, dns(name)), "10.0.0.9", "8.8.8.8"))

    frames = [(t0 + 2.0 * i, frame(n)) for i, n in enumerate(NAMES[device])]
    return pcapng(frames)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "lab"
    (root / "day1").mkdir(parents=True)
    (root / "day2").mkdir()
    (root / "day1" / "plug.pcapng").write_bytes(device_capture("plug", "02:00:00:00:00:01"))
    (root / "day1" / "bulb.pcapng").write_bytes(device_capture("bulb", "02:00:00:00:00:02"))
    (root / "day2" / "cam.pcapng").write_bytes(device_capture("cam", "02:00:00:00:00:03"))
    (root / "day2" / "broken.pcap").write_bytes(b"")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.pcapng").write_bytes(b"never read")
    return root


def test_expand_inputs_walks_folders_and_globs_once_each(folder: Path) -> None:
    files, missing = expand_inputs([folder, str(folder / "day1" / "*.pcapng"), "nope/x", "q*z"])
    assert [f.relative_to(folder).as_posix() for f in files] == [
        "day1/bulb.pcapng", "day1/plug.pcapng", "day2/broken.pcap", "day2/cam.pcapng",
    ]  # fmt: skip
    assert missing == ["nope/x: no such file or folder", "q*z: no file matches"]


def test_each_window_agrees_with_identifying_one_file_at_that_window(
    identifier: Identifier, folder: Path
) -> None:
    files, _ = expand_inputs([folder])
    results = list(identify_paths(identifier, files, BatchParams((0.0, 2.0, 10.0))))
    assert [r.error is not None for r in results] == [False, False, True, False]
    assert "is empty" in (results[2].error or "")
    for r in results:
        if r.error is not None:
            continue
        for k, w in enumerate((0.0, 2.0, 10.0)):
            obs, st = open_observations(r.path)
            (one,) = identify_clients(identifier, obs, IdentifyParams(w), stats=st.events)
            (client,) = r.clients
            got = client["windows"][k]
            assert got["s"] == w and got["device"] == one.answer.device
            assert got["confidence"] == pytest.approx(one.answer.confidence, abs=1e-4)
            assert got["manufacturer"] == level_dict(one.answer.manufacturer)
            assert got["category"] == level_dict(one.answer.category)
            assert got["unknown"] == one.answer.unknown
    bulb = next(r for r in results if r.path.name == "bulb.pcapng").clients[0]
    assert bulb["top"][0]["label"] == "bulb"
    assert bulb["windows"][-1]["manufacturer"]["label"] == "BulbCo"


def test_summaries_as_csv_and_markdown(
    identifier: Identifier, folder: Path, tmp_path: Path
) -> None:
    files, _ = expand_inputs([folder])
    results = list(identify_paths(identifier, files, BatchParams((0.0, 10.0))))
    rows = list(csv.reader(write_summary(results, (0.0, 10.0), tmp_path / "s.csv").open()))
    assert rows[0] == ["file", "client", "first seen", "at 0 s", "at 10 s"]
    assert len(rows) == 1 + 4  # three clients and the skipped file
    assert any(r[3].startswith("skipped: ") for r in rows[1:])
    md = write_summary(results, (0.0, 10.0), tmp_path / "s.md").read_text()
    assert md.startswith("| file | client | first seen | at 0 s | at 10 s |")
    with pytest.raises(ConfigError, match="summary"):
        write_summary(results, (0.0,), tmp_path / "s.txt")


@pytest.mark.parametrize("windows", [(), (-1.0,), (float("nan"),)])
def test_bad_windows_are_named(windows: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError, match="windows_s"):
        BatchParams(windows)


def test_the_command_line_batch(identifier: Identifier, folder: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.npz"
    identifier.save(model)
    out = tmp_path / "o.jsonl"
    args = ["iot", "identify", str(folder), "--model", str(model), "--windows", "0,2,10"]
    res = runner.invoke(app, [*args, "--jsonl", str(out), "--summary", str(tmp_path / "s.md")])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 3 and all(len(x["windows"]) == 3 for x in lines)
    flat = " ".join(res.output.split())
    assert "files read 3, skipped 1; DNS clients 3" in flat and "is empty" in flat
    # JSON lines on standard output, the rest on standard error
    res = runner.invoke(app, ["iot", "identify", str(folder / "day1"), "--model", str(model),
                              "--jsonl", "-"])  # fmt: skip
    assert res.exit_code == 0
    assert [json.loads(x)["key"] for x in res.stdout.splitlines()] == [
        "02:00:00:00:00:02", "02:00:00:00:00:01",
    ]  # fmt: skip
    res = runner.invoke(app, ["iot", "identify", "nothing/*.pcap", "--model", str(model)])
    assert res.exit_code == 2 and "no file matches" in res.output
    res = runner.invoke(app, ["iot", "identify", str(folder), "--model", str(model),
                              "--windows", "0,x"])  # fmt: skip
    assert res.exit_code == 2 and "--windows" in res.output


def test_a_capture_model_reading_a_log_is_warned(identifier: Identifier, tmp_path: Path) -> None:
    from phloem.iot.features import Block, FeatureSpec
    from phloem.iot.sources import feature_gap

    assert feature_gap(Block, "pcap") is None
    assert "resolver, stack" in (feature_gap(Block, "unbound") or "")
    assert feature_gap(set(Block) - {Block.STACK, Block.RESOLVER}, "ftl") is None
    log = tmp_path / "unbound.log"
    log.write_text("[1700000000] unbound[1:0] info: 10.0.0.9 iot.bulbco.io. A IN\n")
    model = tmp_path / "m.npz"
    identifier.save(model)
    for args in (["identify", str(log)], ["monitor", str(log)], ["identify", str(tmp_path)]):
        res = runner.invoke(app, ["iot", *args, "--model", str(model)])
        assert res.exit_code == 0, res.output
        assert "feature block(s), which unbound input does not carry" in " ".join(
            res.output.split()
        )
    logs_only = FeatureSpec(blocks=tuple(set(Block) - {Block.STACK, Block.RESOLVER}))
    log_model = Identifier.train(corpus(per_day=4), spec=logs_only, hierarchy=HIERARCHY,
                                 checkpoints=(0, 2))  # fmt: skip
    log_model.save(model)
    res = runner.invoke(app, ["iot", "identify", str(log), "--model", str(model)])
    assert res.exit_code == 0 and "does not carry" not in res.output


def _site(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """500 captures of four devices, a few cut short, in nested folders; and MAC -> device."""
    root = tmp_path / "site"
    devices = ["plug", "cam", "bulb", "speaker"]
    macs: dict[str, str] = {}
    for i in range(500):
        dev = devices[i % 4]
        folder = root / f"gw{i % 7}" / dev
        folder.mkdir(parents=True, exist_ok=True)
        mac = f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"
        macs[mac] = dev
        data = device_capture(dev, mac, T0 + 600.0 * i)
        if i % 50 == 49:
            data = data[: len(data) // 2]  # cut short
        (folder / f"{i:03d}.pcapng").write_bytes(data)
    return root, macs


def test_a_users_folder_of_500_captures_in_one_call(identifier: Identifier, tmp_path: Path) -> None:
    """Their own data at their scale: 500 captures of four devices, a few damaged, in nested
    folders; one call, every capture accounted for."""
    root, _ = _site(tmp_path)
    model = tmp_path / "m.npz"
    identifier.save(model)
    out = tmp_path / "o.jsonl"
    res = runner.invoke(app, ["iot", "identify", str(root), "--model", str(model),
                              "--windows", "0,2,60", "--jsonl", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len({x["file"] for x in lines}) == 500  # the cut ones keep their first queries
    assert "files read 500, skipped 0; DNS clients 500" in " ".join(res.output.split())
    tops = [x["top"][0]["label"] for x in lines if "/bulb/" in x["file"]]
    assert tops.count("bulb") >= 0.9 * len(tops)


def test_training_on_a_users_folder_of_500_captures_then_drift(tmp_path: Path) -> None:
    """The same site as their own training data: labels by MAC, damage counted, and a drift
    report over the same traffic that finds nothing moved."""
    root, macs = _site(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("mac,device,manufacturer,category\n" + "".join(
        f"{m},{d},{HIERARCHY[d][0]},{HIERARCHY[d][1]}\n" for m, d in macs.items()))  # fmt: skip
    model = tmp_path / "site.npz"
    res = runner.invoke(app, ["iot", "train", str(root), "--labels", str(labels),
                              "--out", str(model), "--checkpoints", "0,2,10"])  # fmt: skip
    flat = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "trained on 500 events of 4 devices" in flat and "files read 500, skipped 0" in flat
    assert "records cut short 10" in flat and "unlabelled clients 0" in flat
    res = runner.invoke(app, ["iot", "drift", str(root), "--model", str(model),
                              "--labels", str(labels)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "no known device has moved" in " ".join(res.output.split())
