"""``phloem iot ...``: train, evaluate and run the DNS-based IoT device identifier.

Each command parses its options, builds the feature set, model kind, evaluation protocol or
input source through their registries, calls one library function and prints its typed
result. Library errors name library parameters (``features``, ``windows_s``, ``kind``...);
:data:`_OPTIONS` renames them to this command line's spelling. Importing this module imports
neither torch, scikit-learn nor scipy: the registries only describe their components.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, TextIO, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from phloem.cli.common import guarded
from phloem.core.config import params_for
from phloem.core.errors import ConfigError
from phloem.core.registry import Registry
from phloem.iot.feature_sets import FEATURE_SETS
from phloem.iot.model_kinds import MODEL_KINDS
from phloem.iot.protocols.base import PROTOCOLS, ScoreTable, Strong
from phloem.iot.sources import AUTO, file_sources

if TYPE_CHECKING:
    from phloem.iot.batch import FileResult
    from phloem.iot.clients import ClientReport
    from phloem.iot.drift import DriftReport
    from phloem.iot.identify import Identifier
    from phloem.iot.protocols import Evaluation
    from phloem.iot.stream import Tracker, Watched
    from phloem.iot.training import Trained

__all__ = ["app"]

app = typer.Typer(help="IoT device identification from DNS.", no_args_is_help=True)
console = Console()

R = TypeVar("R")

#: library parameter -> the option (or argument) of this command line that sets it
_OPTIONS: Mapping[str, str] = {
    "features": "--features",
    "model": "--model",
    "protocol": "--protocol",
    "train_until": "--train-until",
    "until": "--until",
    "exclude": "--exclude",
    "paths": "DATA",
    "labels": "--labels",
    "test_from": "--test-from",
    "test_until": "--test-until",
    "windows_s": "--windows",
    "checkpoints_s": "--checkpoints",
    "confidence": "--confidence",
    "target_false_unknown": "--false-unknown",
    "path": "SOURCE",
    "kind": "--source",
    "follow": "--follow",
    "interface": "--interface",
    "year": "--year",
    "window_s": "--window",
    "top": "--top",
    "anchor": "--anchor",
    "horizon_s": "--horizon",
    "rejoin_after_s": "--rejoin-after",
    "idle_timeout_s": "--idle-timeout",
    "summary": "--summary",
    "alpha": "--alpha",
}


def _listed(parts: list[str]) -> str:
    """``a, b or c.``"""
    return (", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]) + "."


def _help(registry: Registry[Any]) -> str:
    """``name (description), ... or name (description).``: a registry's choices."""
    return _listed([f"{e.name} ({e.description})" for e in registry.entries()])


FEATURES_HELP = _help(FEATURE_SETS)
MODELS_HELP = _help(MODEL_KINDS)
PROTOCOLS_HELP = _help(PROTOCOLS)
SOURCES_HELP = _listed(
    [f"{AUTO} (sniff the format)", *(f"{s.name} ({s.description})" for s in file_sources())]
)
FILES_HELP = "A file to read: " + _listed([s.description for s in file_sources()])


# options several commands share
Features = Annotated[str, typer.Option(help=FEATURES_HELP)]
ModelKind = Annotated[str, typer.Option(help=MODELS_HELP)]
ModelFile = Annotated[Path, typer.Option("--model", help="A model from `iot train`.")]
SourceKind = Annotated[str, typer.Option(help=SOURCES_HELP)]
Year = Annotated[int | None, typer.Option(help="Year of dnsmasq lines (default: now).")]


class _Component(Protocol):
    Params: ClassVar[type[Any]]

    def __init__(self, params: Any = None) -> None: ...


C = TypeVar("C", bound=_Component)


def _make(component: type[C], options: Mapping[str, object]) -> C:
    """``component`` with the parameters it has among ``options`` (validated)."""
    return component(params_for(component, options))


def _run(fn: Callable[[], R], *, interrupted: str) -> R:
    """``guarded(fn)``, library parameters in its errors renamed to this command line's."""

    def renamed() -> R:
        try:
            return fn()
        except ConfigError as e:
            if e.field not in _OPTIONS:
                raise
            raise e.with_field(_OPTIONS[e.field]) from None

    return guarded(renamed, interrupted=interrupted)


def _floats(option: str, text: str) -> tuple[float, ...]:
    try:
        out = tuple(float(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise ConfigError(option, f"{text!r} is not a comma-separated list of seconds") from None
    if not out or any(not w >= 0 for w in out):
        raise ConfigError(option, f"{text!r}: give one or more non-negative seconds")
    return out


def _load_identifier(model_path: Path) -> Identifier:
    from phloem.iot.identify import Identifier

    if not model_path.is_file():
        raise ConfigError("--model", f"{model_path} does not exist; run `phloem iot train`")
    return Identifier.load(model_path)


TrainData = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[DATA]...",
        help="Captures, logs, FTL databases, folders or globs to train on, with --labels; "
        "'doh_iot' (the default) is the bundled corpus.",
    ),
]
Labels = Annotated[
    Path | None,
    typer.Option(help="CSV naming the clients of DATA: mac or ip, device, manufacturer, category."),
]
Until = Annotated[
    str | None,
    typer.Option(
        "--until", "--train-until", help="Last day (YYYY-MM-DD) trained on (default: every day)."
    ),
]
Exclude = Annotated[list[str] | None, typer.Option(help="Leave this device out (repeat for more).")]
Checkpoints = Annotated[
    str, typer.Option(help="Seconds after the anchor the any-time model learns to answer at.")
]
Confidence = Annotated[
    float, typer.Option(help="Top probability at which an answer counts as confident.")
]
FalseUnknown = Annotated[
    float, typer.Option(help="Share of known-device events allowed to be flagged unknown.")
]
ModelOut = Annotated[Path, typer.Option(help="Where to write the numpy model (.npz).")]
Anchor = Annotated[str, typer.Option(help="What starts a client's clock (as for identify).")]


@app.command("train")
def train(
    data: TrainData = None,
    labels: Labels = None,
    out: ModelOut = Path("iot-model.npz"),
    features: Features = "full",
    model: ModelKind = "logreg",
    until: Until = None,
    exclude: Exclude = None,
    checkpoints: Checkpoints = "0,1,2,5,10,30,60",
    confidence: Confidence = 0.9,
    false_unknown: FalseUnknown = 0.01,
    source: SourceKind = AUTO,
    year: Year = None,
    anchor: Anchor = "dhcp-or-first-query",
) -> None:
    """Train the any-time identifier on the doh_iot corpus or your own labelled captures and
    logs, and export it (numpy only)."""

    def go() -> Trained:
        from phloem.iot.training import TrainInputs, TrainParams, train_identifier

        cps = _floats("--checkpoints", checkpoints)
        params = TrainParams(until, tuple(exclude or ()), cps, confidence, false_unknown)
        inputs = TrainInputs(tuple(data or ("doh_iot",)), labels, source, year, anchor)
        feature_set = _make(FEATURE_SETS.get(features, field="features"), {})
        kind = _make(MODEL_KINDS.get(model, field="model"), {})
        trained = train_identifier(feature_set, kind, params, inputs=inputs)
        trained.identifier.save(out)
        return trained

    trained = _run(go, interrupted="stopped before the model was written; nothing was saved.")
    _print_trained(trained, out)


def _print_trained(trained: Trained, out: Path) -> None:
    idt = trained.identifier
    per_device = trained.per_device
    size = out.stat().st_size / 1e3
    console.print(
        f"trained on {trained.n_events} events of {len(per_device)} devices "
        f"({idt.model.vectorizer.n_features} features); model: {escape(str(out))} "
        f"({size:.0f} KB)"
    )
    c = trained.collected
    if c is not None:
        damage = ", ".join(f"{k} {n}" for k, n in sorted(c.records.items())) or "none"
        console.print(
            f"files read {c.files}, skipped {len(c.skipped_files)}; labelled events "
            f"{len(c.events)}, unlabelled clients {c.unlabelled} (not trained on); damaged "
            f"records skipped: {escape(damage)}"
        )
        for path, why in c.skipped_files[:10]:
            console.print(f"skipped {escape(path)}: {escape(why)}")
    if trained.labels is not None:
        console.print(escape(trained.labels.summary()))
    few = sorted(d for d, n in per_device.items() if n < 10)
    if few:
        console.print(f"[yellow]few events[/yellow] (< 10) for {escape(', '.join(few))}")
    for note in trained.warnings:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(note)}")


@app.command("evaluate")
def evaluate(
    protocol: Annotated[str, typer.Option(help=PROTOCOLS_HELP)] = "temporal",
    features: Features = "full",
    model: ModelKind = "logreg",
    train_until: Annotated[str, typer.Option(help="Last training day.")] = "2023-10-25",
    test_from: Annotated[
        str | None, typer.Option(help="First test day (default: the day after --train-until).")
    ] = None,
    test_until: Annotated[str, typer.Option(help="Last test day.")] = "2023-10-28",
    windows: Annotated[str, typer.Option(help="Comma-separated seconds.")] = (
        "0,1,2,5,10,30,60,300"
    ),
    confidence: Annotated[float, typer.Option(help="anytime: confidence threshold.")] = 0.9,
    report: Annotated[
        Path | None, typer.Option(help="Write report.md, plots and confusion matrices here.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the scores here.")] = None,
) -> None:
    """Score the identifier on the doh_iot corpus under one protocol; every split is stated."""

    def go() -> Evaluation:
        from phloem.iot.protocols import run_protocol

        chosen = PROTOCOLS.get(protocol, field="protocol")
        options = {
            "windows_s": _floats("--windows", windows),
            "train_until": train_until,
            "test_from": test_from,
            "test_until": test_until,
            "confidence": confidence,
        }
        proto = _make(chosen, options)
        feature_set = _make(FEATURE_SETS.get(features, field="features"), {})
        kind = _make(MODEL_KINDS.get(model, field="model"), {})
        return run_protocol(proto, feature_set, kind)

    result = _run(go, interrupted="stopped; no scores or report were written.")
    _print_table(result.title, result.report.table())
    for note in result.report.notes():
        console.print(note)
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_dict(), indent=1, default=str))
    if report is not None:
        path = result.write_report(report)
        if path is not None:
            console.print(f"report: {path}")


def _print_table(title: str, table: ScoreTable) -> None:
    t = (
        Table(title=escape(title), box=box.SIMPLE_HEAD, pad_edge=False)
        if table.compact
        else Table(title=escape(title))
    )
    for c in table.columns:
        t.add_column(escape(c), justify="right")
    for row in table.rows:
        t.add_row(*(f"[b]{escape(c)}[/b]" if isinstance(c, Strong) else escape(c) for c in row))
    console.print(t)


@app.command("identify")
def identify(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH...",
            help=FILES_HELP.rstrip(".") + "; or folders (searched recursively) and glob "
            "patterns: many files in one process.",
        ),
    ],
    model_path: ModelFile = Path("iot-model.npz"),
    window: Annotated[float, typer.Option(help="Seconds after each device's anchor.")] = 60.0,
    windows: Annotated[
        str | None,
        typer.Option(help="Answer at each of these seconds, e.g. 0,2,60 (default: --window)."),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Devices shown per client.")] = 3,
    source: SourceKind = AUTO,
    year: Year = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the reports as JSON here.")
    ] = None,
    jsonl: Annotated[
        Path | None,
        typer.Option(help="One JSON line per client (every window) here; '-': standard output."),
    ] = None,
    summary: Annotated[
        Path | None, typer.Option(help="One row per client, as .csv or .md, here.")
    ] = None,
    anchor: Annotated[
        str,
        typer.Option(
            help="What starts a client's clock: dhcp-or-first-query, dhcp, first-query or "
            "capture-start."
        ),
    ] = "dhcp-or-first-query",
) -> None:
    """Per-device report: key, first seen, device -> manufacturer -> category with confidence
    over time, the names that drove the decision, and flags (unknown, no DNS, external
    resolver). Many files (folders, globs) are read in one process, with --jsonl and
    --summary for the results."""
    ws = _run(lambda: _windows(windows, window), interrupted="stopped.")
    one = Path(inputs[0])
    single = (
        len(inputs) == 1
        and not one.is_dir()
        and not set("*?[") & set(inputs[0])
        and jsonl is None
        and summary is None
    )
    if single and windows is None:
        _identify_one(one, model_path, window, top, source, year, json_out, anchor)
        return
    _identify_many(inputs, model_path, ws, top, source, year, anchor, jsonl, summary)


def _windows(windows: str | None, window: float) -> tuple[float, ...]:
    if windows is None:
        return (window,)
    try:
        return tuple(float(w) for w in windows.split(",") if w.strip())
    except ValueError:
        raise ConfigError("--windows", f"{windows!r} is not a list of seconds") from None


def _identify_one(
    capture: Path, model_path: Path, window: float, top: int, source: str,
    year: int | None, json_out: Path | None, anchor: str,
) -> None:  # fmt: skip
    def go() -> tuple[list[ClientReport], str]:
        from phloem.iot.clients import IdentifyParams, identify_clients
        from phloem.iot.sources import feature_gap, open_observations

        params = IdentifyParams(window, top, anchor)
        idt = _load_identifier(model_path)
        obs, stats = open_observations(capture, kind=source, year=year)
        gap = feature_gap(idt.model.vectorizer.spec.blocks, stats.kind)
        if gap is not None:
            Console(stderr=True).print(escape(gap))
        return identify_clients(idt, obs, params, stats=stats.events), stats.summary()

    reports, summary = _run(go, interrupted="stopped; no report was written.")
    rows = [r.to_dict() for r in reports]
    console.print(
        _clients_table(f"{capture.name}: {len(rows)} DNS clients (window {window:g} s)", rows)
    )
    console.print(summary)
    if json_out is not None:
        json_out.write_text(json.dumps(rows, indent=1))


def _identify_many(
    inputs: list[str], model_path: Path, windows_s: tuple[float, ...], top: int, source: str,
    year: int | None, anchor: str, jsonl: Path | None, summary: Path | None,
) -> None:  # fmt: skip
    def go() -> tuple[list[FileResult], list[str]]:
        from phloem.core.progress import progress_bar
        from phloem.iot.batch import BatchParams, expand_inputs, identify_paths

        params = BatchParams(windows_s, top, anchor, source, year)
        files, missing = expand_inputs(inputs)
        if not files:
            raise ConfigError("PATH", "; ".join(missing) or "no input")
        idt = _load_identifier(model_path)
        with (
            _jsonl_sink(jsonl) as sink,
            progress_bar(
                len(files), "identifying", enabled=len(files) > 1 and console.is_terminal
            ) as bar,
        ):
            results = []
            for r in identify_paths(idt, files, params):
                results.append(r)
                if sink is not None:
                    for c in r.clients:
                        sink.write(json.dumps(c) + "\n")
                    sink.flush()  # a kill keeps every file finished so far
                bar.advance(1)
        if summary is not None:
            from phloem.iot.batch import write_summary

            write_summary(results, params.windows_s, summary)
        return results, missing

    results, missing = _run(go, interrupted="stopped; the lines written so far are kept.")
    _print_batch(results, missing, windows_s, jsonl is not None and str(jsonl) == "-")


@contextmanager
def _jsonl_sink(path: Path | None) -> Iterator[TextIO | None]:
    if path is None:
        yield None
    elif str(path) == "-":
        yield sys.stdout
    else:
        with path.open("w", encoding="utf-8") as fh:
            yield fh


def _print_batch(
    results: list[FileResult], missing: list[str], windows_s: tuple[float, ...], quiet: bool
) -> None:
    from phloem.iot.batch import summary_rows

    err = Console(stderr=True)
    out = err if quiet else console
    clients = sum(len(r.clients) for r in results)
    skipped = [r for r in results if r.error is not None]
    if not quiet:
        t = Table(title=escape(f"{len(results)} files, {clients} DNS clients"))
        for c in ("file", "client", "first seen", *(f"at {w:g} s" for w in windows_s)):
            t.add_column(escape(c))
        for row in summary_rows(results, windows_s):
            t.add_row(*(escape(c) for c in row))
        (console if console.is_terminal else Console(width=200)).print(t)
    out.print(f"files read {len(results) - len(skipped)}, skipped {len(skipped)}; "
              f"DNS clients {clients}")  # fmt: skip
    warned = [r for r in results if r.warning is not None]
    if warned:
        out.print(f"{escape(warned[0].warning or '')} ({len(warned)} file(s))")
    for r in skipped:
        out.print(f"skipped {escape(str(r.path))}: {escape(r.error or '')}")
    for m in missing:
        out.print(f"nothing at {escape(m)}")


def _clients_table(title: str, reports: list[dict[str, Any]]) -> Table:
    from phloem.iot.identify import level_text

    """The identify table, from the reports' JSON form (so it shows what the JSON says)."""
    t = Table(title=escape(title))
    for c in ("key / first seen", "device > manufacturer > category", "over time", "why", "flags"):
        t.add_column(c)
    for r in reports:
        lines = [f"{x['label']} {x['p']:.2f}" for x in r["top"]]
        lines += [f"> {level_text(r[k])}" for k in ("manufacturer", "category") if r[k]]
        over, last = [], None
        for o in r["over_time"]:
            label = "" if o["device"] == last else f" {o['device']}"
            over.append(f"{o['s']:g}s{label} {o['p']:.2f}" + (" (unknown)" if o["unknown"] else ""))
            last = o["device"]
        why = "\n".join([f"{w} (-{d:.2f})" for w, d in r["drivers"]] + r["evidence"][:2]) or "-"
        flags = [
            f
            for f, on in (
                ("UNKNOWN device: " + "; ".join(r["why_unknown"]), r["unknown"]),
                ("no DNS", r["no_dns"]),
                ("external resolver", r["external_resolver"]),
            )
            if on
        ]
        cells = (f"{r['key']}\n{r['first_seen']}", "\n".join(lines), "\n".join(over), why)
        t.add_row(*(escape(c) for c in cells), ", ".join(flags) or "-")
    return t


@app.command("drift")
def drift(
    inputs: Annotated[
        list[str],
        typer.Argument(metavar="PATH...", help="Recent captures, logs, folders or globs."),
    ],
    model_path: ModelFile = Path("iot-model.npz"),
    labels: Annotated[
        Path | None,
        typer.Option(help="CSV naming the clients (mac or ip, device): group by true device."),
    ] = None,
    window: Annotated[
        float | None, typer.Option(help="Seconds after each anchor (default: the model's last).")
    ] = None,
    alpha: Annotated[
        float, typer.Option(help="A device moved when flagged this unlikely often.")
    ] = 0.01,
    source: SourceKind = AUTO,
    year: Year = None,
    anchor: Anchor = "dhcp-or-first-query",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Which known devices have moved since the model was trained (more flagged unknown,
    less confident, new names), and whether to recalibrate."""

    def go() -> DriftReport:
        from phloem.iot.batch import expand_inputs
        from phloem.iot.drift import DriftParams, drift_report
        from phloem.iot.labelled import load_key_labels

        params = DriftParams(window, alpha)
        files, missing = expand_inputs(inputs)
        if not files:
            raise ConfigError("PATH", "; ".join(missing) or "no input")
        idt = _load_identifier(model_path)
        named = None if labels is None else load_key_labels(labels)
        return drift_report(idt, files, params, labels=named, kind=source, year=year,
                            anchor=anchor)  # fmt: skip

    report = _run(go, interrupted="stopped; no report was written.")
    _print_drift(report)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=1))


def _print_drift(report: DriftReport) -> None:
    t = Table(title=escape(f"drift at {report.window_s:g} s, by {report.grouped_by}"))
    for c in ("device", "clients", "flagged (expected)", "confidence (then)", "right",
              "new names", "moved"):  # fmt: skip
        t.add_column(c)
    for d in report.devices:
        then = "-" if d.ref_top_p is None else f"{d.ref_top_p:.2f}"
        cells = (
            d.device,
            str(d.clients),
            f"{d.flagged} ({d.expected:.1%})",
            f"{d.top_p:.2f} ({then})",
            "-" if d.right is None else f"{d.right:.0%}",
            "\n".join(f"{n} x{k}" for n, k in d.new_names) or "-",
            ("MOVED: " if d.moved else "") + (d.why or "-"),
        )
        t.add_row(*(escape(c) for c in cells))
    (console if console.is_terminal else Console(width=200)).print(t)
    left_out = (
        f", not named by the labels or not in the model {report.unlabelled}"
        if report.grouped_by == "labels"
        else f", of a MAC vendor no known device has (new devices) {report.foreign}"
    )
    console.print(
        f"files read {report.files}, skipped {len(report.skipped_files)}; clients "
        f"{report.clients}, without DNS in the window {report.silent}{left_out}"
    )
    for path, why in report.skipped_files[:10]:
        console.print(f"skipped {escape(path)}: {escape(why)}")
    console.print(escape(report.advice()))


@app.command("monitor")
def monitor(
    source_path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[SOURCE]", help=FILES_HELP.rstrip(".") + " (omit with --interface)."
        ),
    ] = None,
    model_path: ModelFile = Path("iot-model.npz"),
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep reading as the log/database grows.")
    ] = False,
    interface: Annotated[
        str | None, typer.Option("--interface", "-i", help="Capture live here (CAP_NET_RAW).")
    ] = None,
    source: SourceKind = AUTO,
    horizon: Annotated[
        float, typer.Option(help="Seconds after the anchor of the final answer.")
    ] = (60.0),
    confidence: Annotated[
        float | None, typer.Option(help="Confidence for an answer (default: the model's).")
    ] = None,
    anchor: Annotated[
        str, typer.Option(help="dhcp-or-first-query or first-query: what starts the clock.")
    ] = "dhcp-or-first-query",
    rejoin_after: Annotated[
        float | None, typer.Option(help="A client silent this long (s) is anchored anew.")
    ] = None,
    explain: Annotated[bool, typer.Option(help="Include the driving names.")] = True,
    out: Annotated[
        Path | None, typer.Option(help="Append the JSON lines here (default stdout).")
    ] = (None),
    year: Year = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(help="Live sources: stop after this many seconds without an observation."),
    ] = None,
) -> None:
    """Any-time identification as JSON lines: join, identified (first confident answer),
    revised, unknown and final (at the horizon) per client. Replays a file, follows a growing
    log (--follow) or captures on an interface (--interface)."""

    def go() -> str:
        from phloem.iot.stream import Tracker, Watched

        if (source_path is None) == (interface is None):
            raise ConfigError(
                "SOURCE", "give a file to read or --interface to capture on, not both"
            )
        # identifier, horizon_s, confidence, anchor, rejoin_after_s, explain
        tracker = Tracker(
            _load_identifier(model_path), horizon, confidence, anchor, rejoin_after, explain
        )
        watched = Watched(source_path, interface, source, follow, year)
        return _monitor(tracker, watched, out, idle_timeout)

    summary = _run(go, interrupted="stopped before monitoring began; no lines were written.")
    Console(stderr=True).print(summary)


def _monitor(
    tracker: Tracker, watched: Watched, out: Path | None, idle_timeout_s: float | None
) -> str:
    """Run the monitor loop, JSON lines to ``out`` (or stdout); the source's summary."""
    from phloem.iot.sources import feature_gap
    from phloem.iot.stream import json_lines, monitor

    stop = threading.Event()
    obs, stats = watched.open(stop)
    gap = feature_gap(tracker.identifier.model.vectorizer.spec.blocks, stats.kind)
    if gap is not None:
        Console(stderr=True).print(escape(gap))
    with _sink(out) as sink:
        monitor(tracker, obs, json_lines(sink), live=watched.live, stop=stop,
                idle_timeout_s=idle_timeout_s)  # fmt: skip
    return stats.summary()


@contextmanager
def _sink(out: Path | None) -> Iterator[TextIO]:
    """Standard output, or ``out`` opened for appending (and closed after)."""
    if out is None:
        yield sys.stdout
        return
    with out.open("a", encoding="utf-8") as fh:
        yield fh
