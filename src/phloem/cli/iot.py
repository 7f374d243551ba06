"""``phloem iot ...``: train, evaluate and run the DNS-based IoT device identifier."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from phloem.cli.fl import guarded
from phloem.core.errors import ConfigError

__all__ = ["app"]

app = typer.Typer(help="IoT device identification from DNS.", no_args_is_help=True)
console = Console()

FEATURES = ("full", "sld")
MODELS = ("logreg", "mlp")


def _spec(features: str) -> Any:
    from phloem.iot.features import Block, FeatureSpec

    if features not in FEATURES:
        raise ConfigError("--features", f"unknown {features!r}", FEATURES)
    return FeatureSpec() if features == "full" else FeatureSpec(blocks=(Block.SLD,))


def _model(model: str) -> Any:
    from phloem.iot.models import LogRegClassifier, MLPClassifier

    if model not in MODELS:
        raise ConfigError("--model", f"unknown {model!r}", MODELS)
    return LogRegClassifier if model == "logreg" else MLPClassifier


def _split(train_until: str) -> tuple[list[Any], list[Any]]:
    from phloem.iot.corpus import load_corpus

    events = load_corpus()
    train = [e for e in events if e.day <= train_until]
    test = [e for e in events if e.day > train_until]
    if not train or not test:
        raise ConfigError("--train-until", f"{train_until} leaves an empty train or test set")
    return train, test


@app.command("train")
def train(
    out: Annotated[Path, typer.Option(help="Where to write the numpy model (.npz).")] = Path(
        "iot-model.npz"
    ),
    window: Annotated[float, typer.Option(help="Seconds after the anchor the model sees.")] = 2.0,
    features: Annotated[str, typer.Option(help="full (every block) or sld (the paper's).")] = (
        "full"
    ),
    model: Annotated[str, typer.Option(help="logreg or mlp.")] = "logreg",
    train_until: Annotated[str, typer.Option(help="Last day (YYYY-MM-DD) trained on.")] = (
        "2023-10-25"
    ),
) -> None:
    """Train on the doh_iot corpus up to a day and export a torch-free numpy model."""

    def go() -> tuple[Path, int, int]:
        from phloem.iot.features import Vectorizer
        from phloem.iot.models import export_numpy

        events, _ = _split(train_until)
        vec = Vectorizer(_spec(features)).fit(events, window)
        clf = _model(model)().fit(vec.transform(events, window), [str(e.device) for e in events])
        export_numpy(clf, vec).save(out)
        return out, len(events), vec.n_features

    path, n, d = guarded(go)
    size = path.stat().st_size / 1e6
    console.print(f"trained on {n} events ({d} features); model: {path} ({size:.2f} MB)")


@app.command("evaluate")
def evaluate(
    features: Annotated[str, typer.Option(help="full or sld.")] = "full",
    model: Annotated[str, typer.Option(help="logreg or mlp.")] = "logreg",
    train_until: Annotated[str, typer.Option(help="Last training day.")] = "2023-10-25",
    test_until: Annotated[str, typer.Option(help="Last test day.")] = "2023-10-31",
    windows: Annotated[str, typer.Option(help="Comma-separated seconds.")] = (
        "0,1,2,5,10,30,60,300"
    ),
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the scores here.")] = None,
) -> None:
    """Temporal split: train on the days up to --train-until, test on the later ones."""

    def go() -> list[Any]:
        from phloem.iot.dataset import load_labels
        from phloem.iot.evaluate import evaluate_windows

        try:
            ws = [float(w) for w in windows.split(",")]
        except ValueError:
            raise ConfigError("--windows", f"{windows!r} is not a list of seconds") from None
        train_ev, test_ev = _split(train_until)
        test_ev = [e for e in test_ev if e.day <= test_until]
        known = {e.device for e in train_ev}
        test_ev = [e for e in test_ev if e.device in known]
        labels = load_labels()
        groups = {
            "manufacturer": {d: lab.manufacturer for d, lab in labels.items()},
            "category": {d: lab.category for d, lab in labels.items()},
        }
        return evaluate_windows(
            train_ev, test_ev, spec=_spec(features), model=_model(model), windows=ws,
            groups=groups,
        )  # fmt: skip

    scores = guarded(go)
    t = Table(title=f"{features} features, {model}; train <= {train_until} < test <= {test_until}")
    for c in ("window s", "level", "acc", "macro-F1", "acc (DNS)", "F1 (DNS)", "no DNS"):
        t.add_column(c, justify="right")
    for s in scores:
        t.add_row(
            f"{s.window_s:g}",
            s.level,
            f"{s.accuracy:.3f}",
            f"{s.macro_f1:.3f}",
            f"{s.accuracy_dns:.3f}",
            f"{s.macro_f1_dns:.3f}",
            f"{s.no_dns_share:.3f}",
        )
    console.print(t)
    if json_out is not None:
        json_out.write_text(json.dumps([s.__dict__ for s in scores], indent=1))


SOURCES = ("pcap", "dnsmasq", "unbound", "ftl")


def _source_kind(path: Path) -> str:
    """Guess the input's format from its first bytes."""
    try:
        head = path.open("rb").read(512)
    except OSError as exc:
        raise ConfigError("CAPTURE_OR_LOG", f"cannot read {path}: {exc}") from None
    if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                    b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a"):  # fmt: skip
        return "pcap"
    if head.startswith(b"SQLite format 3"):
        return "ftl"
    text = head.decode("utf-8", "replace")
    return "unbound" if text.startswith("[") and "unbound" in text else "dnsmasq"


def _log_events(path: Path, kind: str, year: int) -> tuple[list[Any], Any]:
    from phloem.iot.logs import (
        LogStats,
        events_from_log,
        read_dnsmasq,
        read_ftl_db,
        read_unbound,
    )

    st = LogStats()
    if kind == "ftl":
        return events_from_log(read_ftl_db(path, stats=st)), st
    with path.open(encoding="utf-8", errors="replace") as fh:
        recs = (
            list(read_unbound(fh, stats=st))
            if kind == "unbound"
            else list(read_dnsmasq(fh, year=year, stats=st))
        )
    return events_from_log(recs), st


@app.command("identify")
def identify(
    capture: Annotated[
        Path,
        typer.Argument(
            help="A pcap/pcapng capture, or a dnsmasq/Pi-hole/unbound log, or "
            "Pi-hole's FTL database."
        ),
    ],
    model_path: Annotated[Path, typer.Option("--model", help="A model from `iot train`.")] = Path(
        "iot-model.npz"
    ),
    window: Annotated[float, typer.Option(help="Seconds after each device's anchor.")] = 2.0,
    top: Annotated[int, typer.Option(help="Labels shown per device.")] = 3,
    source: Annotated[
        str, typer.Option(help="auto, pcap (pcap/pcapng), dnsmasq (or Pi-hole), unbound, ftl.")
    ] = "auto",
    year: Annotated[int, typer.Option(help="Year of dnsmasq log lines (they carry none).")] = (
        datetime.now(UTC).year
    ),
) -> None:
    """Per-device report for a capture: key, first seen, top labels, driving names, flags."""

    def go() -> tuple[list[Any], Any, Any]:
        from phloem.iot.events import EventStats, events_from_packets, uses_external_resolver
        from phloem.iot.models import NumpyModel
        from phloem.iot.pcap import PcapReader

        if not model_path.is_file():
            raise ConfigError("--model", f"{model_path} does not exist; run `phloem iot train`")
        m = NumpyModel.load(model_path)
        stats = EventStats()
        kind = _source_kind(capture) if source == "auto" else source
        if kind not in SOURCES:
            raise ConfigError("--source", f"unknown {source!r}", ("auto", *SOURCES))
        read_stats: Any
        if kind == "pcap":
            with PcapReader(capture) as reader:
                events = events_from_packets(reader, stats=stats)
                read_stats = reader.stats
        else:
            events, read_stats = _log_events(capture, kind, year)
        rows = []
        if events:
            proba = m.predict_proba_events(events, window)
            for i, e in enumerate(events):
                order = proba[i].argsort()[::-1][:top]
                ext = uses_external_resolver(e, peers=events)
                rows.append((e, [(m.classes[j], float(proba[i][j])) for j in order], ext))
        return rows, stats, read_stats

    rows, stats, read_stats = guarded(go)
    malformed_dns = stats.malformed_dns
    t = Table(title=f"{capture.name}: {len(rows)} DNS clients (window {window:g} s)")
    for c in ("key", "first seen (UTC)", "top labels", "names in window", "flags"):
        t.add_column(c)
    for e, labels, ext in rows:
        names = sorted({q.name for q in e.window(window)})
        flags = [f for f, on in (("no DNS in window", not names), ("external resolver", ext)) if on]
        first = datetime.fromtimestamp(e.anchor_utc, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        t.add_row(
            e.key,
            first,
            "\n".join(f"{c} {p:.2f}" for c, p in labels),
            "\n".join(names[:6]) + (f"\n(+{len(names) - 6})" if len(names) > 6 else ""),
            ", ".join(flags) or "-",
        )
    console.print(t)
    if hasattr(read_stats, "packets"):
        console.print(
            f"packets read {read_stats.packets}, malformed {read_stats.malformed}, "
            f"truncated {read_stats.truncated}; undecodable DNS {malformed_dns} (all skipped)"
        )
    else:
        console.print(
            f"log lines {read_stats.lines}, queries {read_stats.queries}, "
            f"malformed {read_stats.malformed} (skipped)"
        )
