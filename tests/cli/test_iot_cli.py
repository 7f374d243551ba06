"""``phloem iot ...`` end to end on the shared doh_iot data."""

from __future__ import annotations

import json
import re
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.iot import live
from phloem.iot.live import can_capture
from phloem.iot.protocols import (
    PROTOCOLS,
    EvaluationProtocol,
    ProtocolReport,
    ScoreTable,
    Setup,
    Strong,
)

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
    [
        ["iot"],
        ["iot", "train"],
        ["iot", "evaluate"],
        ["iot", "identify"],
        ["iot", "monitor"],
        ["iot", "drift"],
    ],
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
    assert "packets read 2, damaged records 0, cut short 0, malformed 0" in _flat(res.stderr)


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


def test_train_until_before_the_first_day_names_the_option(iot_env: Path) -> None:
    # a day after the last is allowed (every day is used); one before the first leaves nothing
    res = runner.invoke(app, ["iot", "train", "--train-until", "2020-01-01", "--out", "x.npz"])
    assert res.exit_code == 2 and "--until" in res.output
    assert "no training event on or before 2020-01-01" in _flat(res.output)


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


# ---- the command line is thin: registries, renamed errors, its own interrupt messages ------


def test_importing_the_iot_commands_imports_no_heavy_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, phloem.cli.iot; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sklearn', 'scipy'}))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_no_iot_command_function_is_over_60_lines() -> None:
    import ast

    import phloem.cli.iot as module

    tree = ast.parse(Path(module.__file__).read_text())
    lengths = {
        node.name: (node.end_lineno or node.lineno) - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
    }
    assert {name: n for name, n in lengths.items() if n > 60} == {}


def test_help_lists_what_the_registries_hold() -> None:
    from phloem.iot.feature_sets import FEATURE_SETS
    from phloem.iot.protocols import PROTOCOLS
    from phloem.iot.sources import file_sources

    def shown(cmd: str) -> str:  # the help text with rich's frame and wrapping undone
        return _flat(re.sub("[│╭╮╰╯─]", " ", runner.invoke(app, ["iot", cmd, "--help"]).output))

    evaluate = shown("evaluate")
    for entry in [*PROTOCOLS.entries(), *FEATURE_SETS.entries()]:
        assert f"{entry.name} ({entry.description})" in evaluate
    identify = shown("identify")
    for source in file_sources():
        assert f"{source.name} ({source.description})" in identify
    assert "interface (" not in identify  # an interface is --interface, not a --source


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["evaluate", "--train-until", "2023-13-01"], "--train-until"),
        (["evaluate", "--test-from", "tomorrow"], "--test-from"),
        (["evaluate", "--protocol", "anytime", "--confidence", "0"], "--confidence"),
        (["evaluate", "--model", "forest"], "--model"),
        (["evaluate", "--windows", ","], "--windows"),
        (["train", "--confidence", "2"], "--confidence"),
        (["train", "--false-unknown", "1"], "--false-unknown"),
        (["train", "--features", "bag"], "--features"),
    ],
)
def test_library_parameters_are_named_as_options(args: list[str], option: str) -> None:
    res = runner.invoke(app, ["iot", *args])
    out = _flat(res.output)
    assert res.exit_code == 2 and f"'{option}'" in out


def test_source_errors_are_named_as_options(trained: Trained, tmp_path: Path) -> None:
    model = ["--model", str(trained.model)]
    cases = [
        (["identify", str(trained.capture), "--source", "syslog", *model], "'--source'"),
        (["monitor", str(trained.capture), "--follow", *model], "'--follow'"),
        (["identify", str(tmp_path / "nope.pcap"), *model], "'SOURCE'"),
        (["monitor", str(trained.capture), "--horizon", "-1", *model], "'--horizon'"),
        (["monitor", str(trained.capture), "--idle-timeout", "-1", *model], "'--idle-timeout'"),
        (["identify", str(trained.capture), "--window", "-1", *model], "'--window'"),
    ]
    for args, named in cases:
        res = runner.invoke(app, ["iot", *args])
        assert res.exit_code == 2 and named in _flat(res.output), (args, res.output)
    res = runner.invoke(app, ["iot", "identify", str(trained.capture), "--source", "bad", *model])
    for kind in ("auto", "pcap", "dnsmasq", "unbound", "ftl"):
        assert repr(kind) in _flat(res.output)


def _interrupt(*args: Any, **kwargs: Any) -> Any:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("command", "target", "says"),
    [
        (["train", "--out", "never.npz"], "phloem.iot.training.train_identifier", "nothing"),
        (["evaluate"], "phloem.iot.protocols.run_protocol", "no scores"),
    ],
)
def test_an_interrupt_says_what_this_command_kept(
    command: list[str], target: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target, _interrupt)
    res = runner.invoke(app, ["iot", *command])
    out = _flat(res.output)
    assert res.exit_code == 130 and "interrupted:" in out and says in out
    assert "phloem fl" not in out and "--resume" not in out


def test_identify_interrupted_writes_no_report(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("phloem.iot.clients.identify_clients", _interrupt)
    out = tmp_path / "r.json"
    cmd = ["iot", "identify", str(trained.capture), "--model", str(trained.model)]
    res = runner.invoke(app, [*cmd, "--json", str(out)])
    assert res.exit_code == 130 and "no report" in _flat(res.output) and not out.exists()


def test_monitor_interrupted_mid_stream_still_ends_every_client(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phloem.iot.sources import open_observations
    from phloem.iot.stream import Watched

    def open_then_interrupt(self: Watched, stop: threading.Event) -> Any:
        obs, stats = open_observations(self.path)

        def stream() -> Iterator[Any]:
            yield from obs
            raise KeyboardInterrupt

        return stream(), stats

    monkeypatch.setattr(Watched, "open", open_then_interrupt)
    cmd = ["iot", "monitor", str(trained.capture), "--model", str(trained.model)]
    res = runner.invoke(app, cmd)
    assert res.exit_code == 0, res.output
    kinds = [x["event"] for x in _json_lines(res.stdout) if x["key"] == ROOMBA_MAC]
    assert kinds[0] == "join" and kinds[-1] == "final"
    assert "packets read 2" in _flat(res.stderr)


@dataclass(frozen=True)
class SizesParams:
    train_until: str = "2023-10-25"


@dataclass(frozen=True)
class SizesReport(ProtocolReport):
    n_train: int = 0
    n_test: int = 0

    def table(self) -> ScoreTable:
        rows = ((Strong("train"), str(self.n_train)), ("test", str(self.n_test)))
        return ScoreTable(("side", "events"), rows)

    def score_rows(self) -> list[dict[str, Any]]:
        return [{"train": self.n_train, "test": self.n_test}]


class Sizes(EvaluationProtocol):
    """A toy protocol: how many events fall on each side of ``train_until``."""

    name: ClassVar[str] = "sizes"
    description: ClassVar[str] = "events on each side of the split"
    Params: ClassVar[type[SizesParams]] = SizesParams
    params: SizesParams

    def run(self, setup: Setup) -> SizesReport:
        n_train = sum(e.day <= self.params.train_until for e in setup.events)
        return SizesReport("by day", n_train, len(setup.events) - n_train)


def test_a_protocol_registered_from_outside_runs_from_the_command_line(
    iot_module_env: Path, tmp_path: Path
) -> None:
    from phloem.iot.corpus import load_corpus

    PROTOCOLS.register(Sizes)  # what @PROTOCOLS.register does at import
    try:
        out = tmp_path / "sizes.json"
        args = ["--protocol", "sizes", "--train-until", "2023-10-21", "--json", str(out)]
        res = runner.invoke(app, ["iot", "evaluate", *args])
    finally:
        PROTOCOLS.unregister(Sizes.name)
    assert res.exit_code == 0, res.output
    days = [e.day for e in load_corpus()]
    n_train = sum(d <= "2023-10-21" for d in days)
    assert json.loads(out.read_text()) == {
        "protocol": "sizes",
        "split": "by day",
        "scores": [{"train": n_train, "test": len(days) - n_train}],
    }
    assert "sizes: full features, logreg; by day" in _flat(res.output)
