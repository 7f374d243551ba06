"""Training on a user's own labelled captures and logs: the labels file, every input kind,
--until / --exclude, and each mistake a careless user makes named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from iot_synth import NAMES
from test_batch import device_capture
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError
from phloem.iot.feature_sets import FEATURE_SETS
from phloem.iot.identify import Identifier
from phloem.iot.labelled import (
    LabelStats,
    collect_labelled,
    load_key_labels,
    normalise_key,
)
from phloem.iot.model_kinds import MODEL_KINDS
from phloem.iot.training import TrainInputs, TrainParams, train_identifier

runner = CliRunner()
DAY = 86_400.0
T0 = 1_700_000_000.0  # 2023-11-14
MACS = {"plug": "02:00:00:00:00:01", "bulb": "02:00:00:00:00:02", "cam": "02:00:00:00:00:03"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff"),
        ("aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff"),
        ("aabb.ccdd.eeff", "aa:bb:cc:dd:ee:ff"),
        ("aabbccddeeff", "aa:bb:cc:dd:ee:ff"),
        (" 192.168.1.23 ", "192.168.1.23"),
        ("fe80::1", "fe80::1"),
        ("192.168.1", None),
        ("aa:bb:cc", None),
        ("", None),
        ("not a key", None),
    ],
)
def test_keys_are_read_in_every_usual_spelling(text: str, key: str | None) -> None:
    assert normalise_key(text) == key


def write_labels(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_labels_file_skips_bad_rows_by_kind(tmp_path: Path) -> None:
    f = write_labels(
        tmp_path / "labels.csv",
        "MAC,Device,Manufacturer,Category\n"
        "02:00:00:00:00:01,plug,PlugCo,plug\n"
        "02-00-00-00-00-02,bulb,,\n"
        "zz:zz,bad,x,y\n"
        ",nokey,x,y\n"
        "02:00:00:00:00:03,,x,y\n"
        "02:00:00:00:00:01,other,x,y\n"
        "02:00:00:00:00:04,plug,OtherCo,plug\n",
    )
    stats = LabelStats()
    labels = load_key_labels(f, stats)
    assert labels.devices == {
        "02:00:00:00:00:01": "plug", "02:00:00:00:00:02": "bulb", "02:00:00:00:00:04": "plug",
    }  # fmt: skip
    assert labels.hierarchy == {"plug": ("PlugCo", "plug"), "bulb": ("?", "?")}
    assert stats.rows == 3
    assert stats.skipped == {
        "bad key": 1, "no key": 1, "no device": 1, "key of another device": 1,
        "inconsistent hierarchy": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"device,manufacturer\nplug,PlugCo\n", "key column"),
        (b"mac,vendor\n02:00:00:00:00:01,x\n", "'device'"),
        (b"", "key column"),
        (b"mac,device\nzz,plug\n", "labels no client"),
        (b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4, "not a text CSV"),
    ],
)
def test_a_bad_labels_file_is_one_error_naming_labels(
    tmp_path: Path, content: bytes, says: str
) -> None:
    f = tmp_path / "labels.csv"
    f.write_bytes(content)
    with pytest.raises(ConfigError, match=says) as info:
        load_key_labels(f)
    assert info.value.field == "labels"
    with pytest.raises(ConfigError, match="does not exist"):
        load_key_labels(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        load_key_labels(tmp_path)


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """Three devices over three days in nested folders, an unlabelled stranger, a log keyed
    by IP, and a file that is not a capture."""
    root = tmp_path / "lab"
    for d in range(3):
        day = root / f"day{d}"
        day.mkdir(parents=True)
        for i in range(4):
            t = T0 + d * DAY + i * 600
            for dev, mac in MACS.items():
                (day / f"{dev}-{i}.pcapng").write_bytes(device_capture(dev, mac, t))
        (day / "stranger.pcapng").write_bytes(device_capture("speaker", "02:00:00:00:00:99", T0))
    lines = [
        f"Nov 14 10:{m:02d}:0{j} dnsmasq[1]: query[A] {n} from 192.168.1.50"
        for m in range(0, 40, 10)
        for j, n in enumerate(NAMES["bulb"])
    ]
    (root / "pihole.log").write_text("\n".join(lines) + "\n")
    (root / "notes.txt.gz").write_bytes(b"\x1f\x8b\x08\x00junk")
    write_labels(
        tmp_path / "labels.csv",
        "mac,device,manufacturer,category\n"
        + "".join(f"{mac},{dev},{dev.title()}Co,{dev}\n" for dev, mac in MACS.items())
        + "192.168.1.50,bulb,BulbCo,bulb\n",
    )
    return root


def test_collect_labels_every_file_kind_and_counts_what_it_skips(lab: Path) -> None:
    from phloem.iot.batch import expand_inputs

    labels = load_key_labels(lab.parent / "labels.csv")
    files, _ = expand_inputs([lab])
    got = collect_labelled(files, labels, year=2023)
    assert got.files == len(files) - 1
    assert [p for p, _ in got.skipped_files] == [str(lab / "notes.txt.gz")]
    assert got.unlabelled == 3  # the stranger, each day
    per_device: dict[str, int] = {}
    for e in got.events:
        per_device[str(e.device)] = per_device.get(str(e.device), 0) + 1
        assert e.experiment and e.queries
    assert per_device == {"plug": 12, "cam": 12, "bulb": 13}  # 12 captures + the log's client
    log_event = next(e for e in got.events if e.key == "192.168.1.50")
    assert [q.name for q in log_event.queries[:2]] == NAMES["bulb"]


def _train(lab: Path, **params: object) -> object:
    return train_identifier(
        FEATURE_SETS.get("full")(),
        MODEL_KINDS.get("logreg")(),
        TrainParams(checkpoints_s=(0.0, 2.0), **params),  # type: ignore[arg-type]
        inputs=TrainInputs((str(lab),), lab.parent / "labels.csv", year=2023),
    )


def test_train_on_user_data_with_until_and_exclude(lab: Path) -> None:
    from phloem.iot.training import Trained

    full = _train(lab)
    assert isinstance(full, Trained)
    assert full.per_device == {"bulb": 13, "cam": 12, "plug": 12}
    rec = full.identifier.trained_on
    assert rec["inputs"] == [str(lab)] and rec["labels"].endswith("labels.csv")
    assert full.identifier.hierarchy["cam"] == ("CamCo", "cam")
    first_day = _train(lab, until="2023-11-14", exclude=("cam",))
    assert isinstance(first_day, Trained)
    assert first_day.per_device == {"bulb": 5, "plug": 4}
    assert first_day.identifier.trained_on["excluded"] == ["cam"]
    assert first_day.identifier.trained_on["days"] == ["2023-11-14", "2023-11-14"]


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"exclude": ("fridge",)}, "exclude", "no training event of fridge"),
        ({"until": "2020-01-01"}, "until", "no training event on or before"),
        ({"until": "2023-13-01"}, "until", None),
        ({"exclude": ("cam", "plug")}, "paths", "at least two labelled devices"),
        ({"confidence": float("nan")}, "confidence", None),
        ({"target_false_unknown": 1.0}, "target_false_unknown", None),
    ],
)
def test_bad_training_params_name_their_field(
    lab: Path, params: dict[str, object], field: str, says: str | None
) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        _train(lab, **params)
    assert info.value.field == field


def test_train_cli_on_user_data_then_identify(lab: Path, tmp_path: Path) -> None:
    model = tmp_path / "mine.npz"
    labels = str(lab.parent / "labels.csv")
    args = ["iot", "train", str(lab), "--labels", labels, "--out", str(model), "--year", "2023"]
    res = runner.invoke(app, [*args, "--checkpoints", "0,2", "--exclude", "cam"])
    out = "".join(res.output.split())  # paths wrap anywhere
    assert res.exit_code == 0, res.output
    assert "trainedon25eventsof2devices" in out
    assert "unlabelledclients3" in out and "skipped1" in out and "notes.txt.gz" in out
    assert Identifier.load(model).trained_on["excluded"] == ["cam"]
    res = runner.invoke(app, ["iot", "identify", str(lab / "day1" / "plug-0.pcapng"),
                              "--model", str(model)])  # fmt: skip
    assert res.exit_code == 0 and "plug" in res.output


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ([], "'--labels'"),
        (["--labels", "nope.csv"], "'--labels'"),
        (["--labels", "LABELS", "--until", "yesterday"], "'--until'"),
        (["--labels", "LABELS", "--exclude", "fridge"], "'--exclude'"),
        (["--labels", "LABELS", "--anchor", "sunrise"], "'--anchor'"),
    ],
)
def test_train_cli_mistakes_are_one_line(lab: Path, extra: list[str], named: str) -> None:
    extra = [str(lab.parent / "labels.csv") if a == "LABELS" else a for a in extra]
    res = runner.invoke(app, ["iot", "train", str(lab), *extra, "--out", "never.npz"])
    assert res.exit_code == 2 and named in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["iot", "train", str(lab / "missing"), "--labels", "x.csv"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "'DATA'" in out and "no such file" in out


def test_labels_that_name_no_client_say_so(lab: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("mac,device\n02:00:00:00:77:77,fridge\n")
    with pytest.raises(ConfigError, match="name none of the") as info:
        train_identifier(
            FEATURE_SETS.get("full")(),
            MODEL_KINDS.get("logreg")(),
            inputs=TrainInputs((str(lab / "day0"),), other),
        )
    assert info.value.field == "labels"
