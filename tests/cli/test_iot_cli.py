"""``phloem iot ...`` end to end on the shared doh_iot data."""

from __future__ import annotations

import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.iot import live
from phloem.iot.live import can_capture

runner = CliRunner()
CAPTURE = "dns_only/iROBOT_roomba/2023-10-26/2023-10-26_05:23:46.395s.pcap"
ROOMBA_MAC = "50:14:79:ff:0e:6d"


@pytest.fixture
def iot_env(
    data_file: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    tarball = data_file("iot/doh_iot/dns_only_dev.tar.gz")
    monkeypatch.setenv("PHLOEM_DATA_DIR", str(tarball.parents[2]))
    monkeypatch.setenv("PHLOEM_CACHE_DIR", str(tmp_path / "cache"))
    return tarball


@pytest.mark.parametrize(
    "cmd",
    [["iot"], ["iot", "train"], ["iot", "evaluate"], ["iot", "identify"], ["iot", "monitor"]],
)
def test_help(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_bad_choices_name_the_option(iot_env: Path) -> None:
    res = runner.invoke(app, ["iot", "evaluate", "--features", "bag"])
    assert res.exit_code == 2 and "--features" in res.output and "sld" in res.output
    res = runner.invoke(app, ["iot", "identify", "x.pcap", "--model", "missing.npz"])
    assert res.exit_code == 2 and "iot train" in res.output
    res = runner.invoke(app, ["iot", "identify", "x.pcap", "--top", "0"])
    assert res.exit_code == 2 and "--top" in res.output


def test_log_features_leave_out_what_a_resolver_log_lacks(iot_env: Path, tmp_path: Path) -> None:
    from phloem.iot.features import Block
    from phloem.iot.identify import Identifier

    model = tmp_path / "log.npz"
    args = ["--out", str(model), "--features", "log", "--checkpoints", "2"]
    res = runner.invoke(app, ["iot", "train", *args])
    assert res.exit_code == 0, res.output
    blocks = set(Identifier.load(model).model.vectorizer.spec.blocks)
    assert blocks == set(Block) - {Block.STACK, Block.RESOLVER}


def test_train_identify_and_evaluate(iot_env: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.npz"
    res = runner.invoke(app, ["iot", "train", "--out", str(model), "--features", "sld"])
    assert res.exit_code == 0, res.output
    assert 0 < model.stat().st_size < 1_000_000
    with tarfile.open(iot_env, "r:gz") as tf:
        member = tf.extractfile(CAPTURE)
        assert member is not None
        cap = tmp_path / "roomba.pcapng"
        cap.write_bytes(member.read())
    res = runner.invoke(app, ["iot", "identify", str(cap), "--model", str(model)])
    assert res.exit_code == 0, res.output
    assert "iROBOT_roomba" in res.output and "malformed 0" in res.output
    # the same device seen through a dnsmasq / Pi-hole log instead of a capture
    log = tmp_path / "pihole.log"
    log.write_text(
        "Nov 25 10:00:01 dnsmasq[812]: query[A] 0.irobot.pool.ntp.org from 192.168.1.23\n"
        "Nov 25 10:00:02 dnsmasq[812]: query[A] garbled\n"
    )
    res = runner.invoke(app, ["iot", "identify", str(log), "--model", str(model)])
    assert res.exit_code == 0, res.output
    assert "192.168.1.23" in res.output and "iROBOT_roomba" in res.output
    assert "malformed 1" in res.output
    out = tmp_path / "scores.json"
    args = ["--features", "sld", "--windows", "2", "--json", str(out)]
    res = runner.invoke(app, ["iot", "evaluate", *args])
    assert res.exit_code == 0, res.output
    scores = json.loads(out.read_text())["scores"]
    assert {s["level"] for s in scores} == {"device", "manufacturer", "category"}
    device = next(s for s in scores if s["level"] == "device")
    assert 0.7 < device["accuracy_dns"] <= 1.0


# ---- shared: one small model for the monitor / identify tests ------------------------------


@dataclass(frozen=True)
class Trained:
    model: Path
    capture: Path  # one roomba capture of a test day (a single NTP query)


@pytest.fixture(scope="module")
def iot_module_env(
    data_file: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Like ``iot_env``, for the whole module: the parsed corpus is cached once."""
    tarball = data_file("iot/doh_iot/dns_only_dev.tar.gz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHLOEM_DATA_DIR", str(tarball.parents[2]))
        mp.setenv("PHLOEM_CACHE_DIR", str(tmp_path_factory.mktemp("iot_cache")))
        yield tarball


@pytest.fixture(scope="module")
def trained(iot_module_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("iot_model")
    model = root / "m.npz"
    args = ["--out", str(model), "--features", "sld", "--checkpoints", "2"]
    res = runner.invoke(app, ["iot", "train", *args])
    assert res.exit_code == 0, res.output
    with tarfile.open(iot_module_env, "r:gz") as tf:
        member = tf.extractfile(CAPTURE)
        assert member is not None
        cap = root / "roomba.pcap"
        cap.write_bytes(member.read())
    return Trained(model, cap)


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _flat(text: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(text.split())


# ---- monitor ------------------------------------------------------------------------------


def test_monitor_replays_a_capture_as_json_lines(trained: Trained) -> None:
    # the roomba's one query (0.irobot.pool.ntp.org) is shared with two other devices under
    # SLD features: top probability ~1/3, so ask for answers from 0.3
    cmd = ["iot", "monitor", str(trained.capture), "--model", str(trained.model)]
    res = runner.invoke(app, [*cmd, "--confidence", "0.3"])
    assert res.exit_code == 0, res.output
    lines = _json_lines(res.stdout)
    assert len(lines) == len(res.stdout.splitlines())  # stdout holds nothing else
    mine = [x for x in lines if x["key"] == ROOMBA_MAC]
    kinds = [x["event"] for x in mine]
    assert kinds[0] == "join" and kinds[-1] == "final" and kinds.count("final") == 1
    assert kinds.index("identified") < kinds.index("final")
    identified = mine[kinds.index("identified")]
    assert identified["device"] == "iROBOT_roomba" and identified["confident"]
    final = mine[-1]
    assert final["device"] == "iROBOT_roomba" and final["identified_as"] == "iROBOT_roomba"
    assert final["n_queries"] == 1
    assert "packets read 2, malformed 0" in _flat(res.stderr)


def test_monitor_follows_a_growing_log_until_idle(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "pihole.log"
    log.write_text("")
    following = threading.Event()
    real_follow = live.follow_lines

    def follow_lines(*args: Any, **kwargs: Any) -> Iterator[str]:
        lines = real_follow(*args, **kwargs)  # the end of the file is taken here
        following.set()
        return lines

    monkeypatch.setattr(live, "follow_lines", follow_lines)
    # a gateway five hours west of UTC: its log's times must not be read as UTC
    monkeypatch.setenv("TZ", "GW+05")
    time.tzset()

    def writer() -> None:
        assert following.wait(30)
        time.sleep(0.1)
        now = datetime.now().astimezone()  # dnsmasq logs the gateway's local time
        with log.open("a") as fh:
            fh.write(
                f"{now:%b} {now.day:2d} {now:%H:%M:%S} dnsmasq[812]: query[A] "
                "0.irobot.pool.ntp.org from 192.168.1.23\n"
            )

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    cmd = ["iot", "monitor", str(log), "--follow", "--idle-timeout", "1"]
    year = str(datetime.now().astimezone().year)
    began = time.monotonic()
    try:
        res = runner.invoke(app, [*cmd, "--year", year, "--model", str(trained.model)])
    finally:
        took = time.monotonic() - began
        thread.join(5)
        monkeypatch.undo()
        time.tzset()
    assert res.exit_code == 0, res.output
    assert took < 15
    lines = [x for x in _json_lines(res.stdout) if x["key"] == "192.168.1.23"]
    kinds = [x["event"] for x in lines]
    assert kinds[0] == "join" and kinds[-1] == "final" and kinds.count("final") == 1
    final = lines[-1]
    assert final["n_queries"] == 1 and final["device"] == "iROBOT_roomba"
    # the line's local time was read as local time: the final came at the end, not at once
    assert final["elapsed_s"] < 30
    assert "log lines 1, queries 1, malformed 0" in _flat(res.stderr)


def test_monitor_unknown_interface_names_it(trained: Trained) -> None:
    res = runner.invoke(
        app, ["iot", "monitor", "--interface", "nosuchif0", "--model", str(trained.model)]
    )
    assert res.exit_code != 0
    ok, _ = can_capture()
    if ok:
        assert res.exit_code == 1 and "'nosuchif0'" in _flat(res.output)
    else:
        assert "CAP_NET_RAW" in _flat(res.output)


def test_monitor_bad_arguments_name_the_option(trained: Trained) -> None:
    model = ["--model", str(trained.model)]
    res = runner.invoke(app, ["iot", "monitor", str(trained.capture), "--interface", "lo", *model])
    assert res.exit_code == 2 and "--interface" in _flat(res.output)
    res = runner.invoke(app, ["iot", "monitor", str(trained.capture), "--anchor", "bogus", *model])
    out = _flat(res.output)
    assert res.exit_code == 2 and "--anchor" in out and "'first-query'" in out


# ---- identify -----------------------------------------------------------------------------


def test_identify_writes_json_reports(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "reports.json"
    cmd = ["iot", "identify", str(trained.capture), "--model", str(trained.model)]
    res = runner.invoke(app, [*cmd, "--json", str(out)])
    assert res.exit_code == 0, res.output
    (report,) = json.loads(out.read_text())
    keys = {"device", "manufacturer", "category", "over_time", "drivers", "names", "no_dns",
            "external_resolver"}  # fmt: skip
    assert keys <= set(report)
    assert report["key"] == ROOMBA_MAC and report["device"] == "iROBOT_roomba"
    assert report["manufacturer"]["label"] == "iRobot"
    assert report["names"] == ["0.irobot.pool.ntp.org"] and not report["no_dns"]
    assert [o["s"] for o in report["over_time"]] == [2.0, 60.0]
    # its only resolver is 8.8.8.8, but it is the only client: nothing to compare with
    assert report["external_resolver"] is False


def test_identify_over_time_ends_with_the_windows_answer(trained: Trained, tmp_path: Path) -> None:
    cmd = ["iot", "identify", str(trained.capture), "--model", str(trained.model)]
    for extra, steps in ((["--window", "0"], [0.0]), (["--window", "5", "--top", "1"], [2.0, 5.0])):
        out = tmp_path / "r.json"
        res = runner.invoke(app, [*cmd, *extra, "--json", str(out)])
        assert res.exit_code == 0, res.output
        (report,) = json.loads(out.read_text())
        assert [o["s"] for o in report["over_time"]] == steps
        last = report["over_time"][-1]
        assert last["device"] == report["top"][0]["label"] == "iROBOT_roomba"
        assert last["p"] == round(report["confidence"], 3)
        assert last["unknown"] == report["unknown"]


def test_train_until_leaving_no_test_days_names_the_option(iot_env: Path) -> None:
    res = runner.invoke(app, ["iot", "train", "--train-until", "2099-01-01", "--out", "x.npz"])
    assert res.exit_code == 2 and "--train-until" in res.output
    assert "empty train or test set" in _flat(res.output)


# ---- evaluate -----------------------------------------------------------------------------


def test_evaluate_unknown_protocol_lists_them(iot_module_env: Path) -> None:
    res = runner.invoke(app, ["iot", "evaluate", "--protocol", "bogus"])
    out = _flat(res.output)
    assert res.exit_code == 2 and "--protocol" in out and "'bogus'" in out
    for p in ("temporal", "experiment", "unknown", "anytime", "paper"):
        assert repr(p) in out


def test_evaluate_anytime(iot_module_env: Path) -> None:
    # the nine headers fit an 80-column console (pytest-xdist workers set COLUMNS=80)
    args = ["--protocol", "anytime", "--features", "sld", "--windows", "2"]
    res = runner.invoke(app, ["iot", "evaluate", *args])
    assert res.exit_code == 0, res.output
    assert "answered" in res.output and "1st acc" in res.output and "…" not in res.output


def test_evaluate_experiment_writes_a_report(iot_module_env: Path, tmp_path: Path) -> None:
    report, out = tmp_path / "report", tmp_path / "scores.json"
    args = ["--protocol", "experiment", "--features", "sld", "--windows", "0,2"]
    res = runner.invoke(
        app, ["iot", "evaluate", *args, "--report", str(report), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert (report / "report.md").is_file() and (report / "curves.png").is_file()
    assert list(report.glob("confusion_*.png"))
    data = json.loads(out.read_text())
    assert data["protocol"] == "experiment" and "experiment split" in data["split"]
    scores = data["scores"]
    assert {(s["window_s"], s["level"]) for s in scores} == {
        (w, lv) for w in (0.0, 2.0) for lv in ("device", "manufacturer", "category")
    }
    assert all(0.0 <= s["accuracy"] <= 1.0 for s in scores)


def test_monitor_live_on_loopback(trained: Trained) -> None:
    """End to end on a real AF_PACKET socket: a DNS query sent to 127.0.0.1:53 is seen,
    the client joins, and its final line comes when the idle timeout stops the capture."""
    ok, why = can_capture()
    if not ok:
        pytest.skip(f"live capture not permitted here: {why}")
    import socket
    import struct

    name = f"probe-{time.monotonic_ns()}.irobot.pool.ntp.org"
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    query = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + qname + b"\x00\x00\x01\x00\x01"

    def send() -> None:
        time.sleep(1.0)  # the capture socket is open once the command has started
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(query, ("127.0.0.1", 53))

    sender = threading.Thread(target=send)
    sender.start()
    args = ["--interface", "lo", "--idle-timeout", "2", "--horizon", "5", "--no-explain"]
    res = runner.invoke(app, ["iot", "monitor", *args, "--model", str(trained.model)])
    sender.join()
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    finals = [x for x in lines if x["event"] == "final" and x["n_queries"] >= 1]
    assert any(x["event"] == "join" for x in lines) and finals
    assert "packets read" in res.stderr
