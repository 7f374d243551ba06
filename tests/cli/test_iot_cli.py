"""``phloem iot ...`` end to end on the shared doh_iot data."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app

runner = CliRunner()
CAPTURE = "dns_only/iROBOT_roomba/2023-10-26/2023-10-26_05:23:46.395s.pcap"


@pytest.fixture
def iot_env(
    data_file: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    tarball = data_file("iot/doh_iot/dns_only_dev.tar.gz")
    monkeypatch.setenv("PHLOEM_DATA_DIR", str(tarball.parents[2]))
    monkeypatch.setenv("PHLOEM_CACHE_DIR", str(tmp_path / "cache"))
    return tarball


@pytest.mark.parametrize(
    "cmd", [["iot"], ["iot", "train"], ["iot", "evaluate"], ["iot", "identify"]]
)
def test_help(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_bad_choices_name_the_option(iot_env: Path) -> None:
    res = runner.invoke(app, ["iot", "evaluate", "--features", "bag"])
    assert res.exit_code == 2 and "--features" in res.output and "sld" in res.output
    res = runner.invoke(app, ["iot", "identify", "x.pcap", "--model", "missing.npz"])
    assert res.exit_code == 2 and "iot train" in res.output


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
    scores = json.loads(out.read_text())
    assert {s["level"] for s in scores} == {"device", "manufacturer", "category"}
    device = next(s for s in scores if s["level"] == "device")
    assert 0.7 < device["accuracy_dns"] <= 1.0
