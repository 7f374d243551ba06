"""``phloem iot ...``: train, evaluate and run the DNS-based IoT device identifier."""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from phloem.cli.common import guarded
from phloem.core.errors import ConfigError

__all__ = ["app"]

app = typer.Typer(help="IoT device identification from DNS.", no_args_is_help=True)
console = Console()

FEATURES = ("full", "log", "sld")
FEATURES_HELP = (
    "full (every block), log (what a resolver log carries: names, types, counts and order, "
    "without the stack fingerprint or the resolver address) or sld (the paper's)."
)
MODELS = ("logreg", "mlp")


def _spec(features: str) -> Any:
    from phloem.iot.features import Block, FeatureSpec

    if features not in FEATURES:
        raise ConfigError("--features", f"unknown {features!r}", FEATURES)
    if features == "full":
        return FeatureSpec()
    if features == "log":
        return FeatureSpec(blocks=tuple(b for b in Block if b not in (Block.STACK, Block.RESOLVER)))
    return FeatureSpec(blocks=(Block.SLD,))


def _model(model: str) -> Any:
    from phloem.iot.models import LogRegClassifier, MLPClassifier

    if model not in MODELS:
        raise ConfigError("--model", f"unknown {model!r}", MODELS)
    return LogRegClassifier if model == "logreg" else MLPClassifier


def _split(train_until: str) -> tuple[list[Any], list[Any]]:
    from phloem.iot.corpus import load_corpus
    from phloem.iot.evaluate import temporal_split_events

    try:
        return temporal_split_events(load_corpus(), until=train_until)
    except ValueError as exc:
        raise ConfigError("--train-until", str(exc)) from None


def _hierarchy() -> dict[str, tuple[str, str]]:
    from phloem.iot.dataset import load_labels

    return {d: (lab.manufacturer, lab.category) for d, lab in load_labels().items()}


def _floats(option: str, text: str) -> list[float]:
    try:
        out = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise ConfigError(option, f"{text!r} is not a comma-separated list of seconds") from None
    if not out or any(not w >= 0 for w in out):
        raise ConfigError(option, f"{text!r}: give one or more non-negative seconds")
    return out


def _load_identifier(model_path: Path) -> Any:
    from phloem.iot.identify import Identifier

    if not model_path.is_file():
        raise ConfigError("--model", f"{model_path} does not exist; run `phloem iot train`")
    return Identifier.load(model_path)


@app.command("train")
def train(
    out: Annotated[Path, typer.Option(help="Where to write the numpy model (.npz).")] = Path(
        "iot-model.npz"
    ),
    features: Annotated[str, typer.Option(help=FEATURES_HELP)] = "full",
    model: Annotated[str, typer.Option(help="logreg or mlp.")] = "logreg",
    train_until: Annotated[str, typer.Option(help="Last day (YYYY-MM-DD) trained on.")] = (
        "2023-10-25"
    ),
    checkpoints: Annotated[
        str, typer.Option(help="Seconds after the anchor the any-time model learns to answer at.")
    ] = "0,1,2,5,10,30,60",
    confidence: Annotated[
        float, typer.Option(help="Top probability at which an answer counts as confident.")
    ] = 0.9,
    false_unknown: Annotated[
        float, typer.Option(help="Share of known-device events allowed to be flagged unknown.")
    ] = 0.01,
) -> None:
    """Train the any-time identifier on the doh_iot corpus and export it (numpy only)."""

    def go() -> tuple[Path, int, int]:
        from phloem.iot.identify import Identifier

        if not 0.0 < confidence <= 1.0:
            raise ConfigError("--confidence", f"{confidence} is not in (0, 1]")
        if not 0.0 <= false_unknown < 1.0:
            raise ConfigError("--false-unknown", f"{false_unknown} is not in [0, 1)")
        cps = _floats("--checkpoints", checkpoints)
        events, _ = _split(train_until)
        idt = Identifier.train(
            events,
            spec=_spec(features),
            model=_model(model),
            checkpoints=cps,
            hierarchy=_hierarchy(),
            target_false_unknown=false_unknown,
            confidence=confidence,
        )
        idt.save(out)
        return out, len(events), idt.model.vectorizer.n_features

    path, n, d = guarded(go)
    size = path.stat().st_size / 1e6
    console.print(f"trained on {n} events ({d} features); model: {path} ({size:.2f} MB)")


PROTOCOLS = ("temporal", "experiment", "unknown", "anytime", "paper")


@app.command("evaluate")
def evaluate(
    protocol: Annotated[
        str,
        typer.Option(
            help="temporal (train on earlier days), experiment (random split of experiments), "
            "unknown (leave one device out; or the test days' new devices), "
            "anytime (query-by-query replay), paper (random rows)."
        ),
    ] = "temporal",
    features: Annotated[str, typer.Option(help=FEATURES_HELP)] = "full",
    model: Annotated[str, typer.Option(help="logreg or mlp.")] = "logreg",
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
    if protocol not in PROTOCOLS:
        guarded(_raise, ConfigError("--protocol", f"unknown {protocol!r}", PROTOCOLS))

    def go() -> tuple[str, list[Any], dict[str, Any]]:
        from phloem.iot.corpus import load_corpus
        from phloem.iot.evaluate import (
            evaluate_anytime,
            evaluate_windows,
            experiment_split,
            leave_one_device_out,
            paper_rows,
            unseen_devices,
        )

        ws = _floats("--windows", windows)
        spec, factory = _spec(features), _model(model)
        first_test = test_from or "0"
        if protocol in ("experiment", "paper"):
            events = [e for e in load_corpus() if e.day <= test_until]
            split = f"{protocol} split of all captures up to {test_until}"
            if protocol == "paper":
                return split, [(w, paper_rows(events, w)) for w in ws], {}
            train_ev, test_ev = experiment_split(events, 0.3)
        else:
            train_ev, rest = _split(train_until)
            test_ev = [e for e in rest if first_test <= e.day <= test_until]
            days = sorted({e.day for e in test_ev})
            if not test_ev:
                raise ConfigError("--test-until", "no test events between the given days")
            first_day = min(e.day for e in train_ev)
            split = f"train {first_day}..{train_until}, test days " + (
                ", ".join(days) if len(days) <= 4 else f"{days[0]}..{days[-1]}"
            )
        known = {e.device for e in train_ev}
        if protocol == "unknown":
            new_devices = sorted({str(e.device) for e in test_ev} - {str(d) for d in known})
            if new_devices:  # genuinely new devices in the test days: score those
                unk = [
                    s
                    for w in ws
                    for s in unseen_devices(train_ev, test_ev, w, spec=spec, model=factory)
                ]
                return f"{split}; {len(new_devices)} new devices", unk, {}
            unk = [
                s
                for w in ws
                for s in leave_one_device_out(train_ev, test_ev, w, spec=spec, model=factory)
            ]
            return split, unk, {}
        if protocol == "anytime":
            from phloem.iot.identify import Identifier

            idt = Identifier.train(train_ev, spec=spec, model=factory, hierarchy=_hierarchy())
            test_known = [e for e in test_ev if e.device in known]
            return (
                split,
                [evaluate_anytime(idt, test_known, confidence=confidence, horizon_s=w) for w in ws],
                {},
            )
        new = sorted({str(e.device) for e in test_ev} - known)
        test_ev = [e for e in test_ev if e.device in known]
        h = _hierarchy()
        groups = {
            "manufacturer": {d: m for d, (m, _) in h.items()},
            "category": {d: c for d, (_, c) in h.items()},
        }
        preds: dict[str, tuple[list[str], list[str]]] = {}
        scores = evaluate_windows(
            train_ev,
            test_ev,
            spec=spec,
            model=factory,
            windows=ws,
            groups=groups,
            predictions=preds,
        )
        extra = {"predictions": preds, "left_out": new, "n_train": len(train_ev)}
        return split, scores, extra

    split, scores, extra = guarded(go)
    title = f"{protocol}: {features} features, {model}; {split}"
    _print_scores(protocol, title, scores, extra)
    if json_out is not None:
        rows = [
            s.__dict__ if hasattr(s, "__dict__") else {"window_s": s[0], "row_accuracy": s[1]}
            for s in scores
        ]
        json_out.write_text(
            json.dumps(
                {"protocol": protocol, "split": split, "scores": rows}, indent=1, default=str
            )
        )
    if report is not None and protocol in ("temporal", "experiment"):
        from phloem.iot.report import write_report

        preds = extra["predictions"]
        wanted = ("device@0s", "device@2s", "device@60s", "manufacturer@60s", "category@60s")
        keep = {k: v for k, v in preds.items() if k in wanted}
        meta = {
            "protocol": protocol,
            "split": split,
            "features": features,
            "model": model,
            "train events": extra["n_train"],
            "test events": scores[0].n_test,
            "left out (unseen in training)": ", ".join(extra["left_out"]) or "none",
        }
        path = write_report(report, scores, predictions=keep, meta=meta, title=title)
        console.print(f"report: {path}")


def _raise(exc: Exception) -> None:
    raise exc


def _print_scores(protocol: str, title: str, scores: list[Any], extra: dict[str, Any]) -> None:
    t = Table(title=title)
    if protocol == "paper":
        for c in ("window s", "row accuracy"):
            t.add_column(c, justify="right")
        for w, acc in scores:
            t.add_row(f"{w:g}", f"{acc:.3f}")
    elif protocol == "unknown":
        for c in ("window s", "unseen device", "flagged", "known flagged", "n"):
            t.add_column(c, justify="right")
        for s in scores:
            t.add_row(
                f"{s.window_s:g}",
                s.device,
                f"{s.unknown_flagged:.3f}",
                f"{s.known_flagged:.4f}",
                str(s.n_unknown),
            )
        by_w: dict[float, list[Any]] = {}
        for s in scores:
            by_w.setdefault(s.window_s, []).append(s)
        for w, ss in by_w.items():
            t.add_row(
                f"{w:g}",
                "[b]mean[/b]",
                f"{sum(x.unknown_flagged for x in ss) / len(ss):.3f}",
                f"{sum(x.known_flagged for x in ss) / len(ss):.4f}",
                "",
            )
    elif protocol == "anytime":
        # short headers and a light box: nine columns fit an 80-column terminal
        t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
        cols = ("T s", "events", "answered", "1st acc", "final", "med s", "p90 s", "revised",
                "unknown")  # fmt: skip
        for c in cols:
            t.add_column(c, justify="right")
        for s in scores:
            t.add_row(
                f"{s.horizon_s:g}",
                str(s.n_events),
                f"{s.answered:.3f}",
                f"{s.first_answer_accuracy:.4f}",
                f"{s.final_accuracy:.4f}",
                f"{s.median_time_s:.2f}",
                f"{s.p90_time_s:.2f}",
                f"{s.revised:.3f}",
                f"{s.flagged_unknown:.3f}",
            )
    else:
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
    if extra.get("left_out"):
        console.print(f"devices not in training, left out: {', '.join(extra['left_out'])}")


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
    window: Annotated[float, typer.Option(help="Seconds after each device's anchor.")] = 60.0,
    top: Annotated[int, typer.Option(min=1, help="Devices shown per client.")] = 3,
    source: Annotated[
        str, typer.Option(help="auto, pcap (pcap/pcapng), dnsmasq (or Pi-hole), unbound, ftl.")
    ] = "auto",
    year: Annotated[int | None, typer.Option(help="Year of dnsmasq lines (default: now).")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the reports as JSON here.")
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
    resolver)."""

    def go() -> tuple[list[dict[str, Any]], str]:
        from phloem.iot.events import (
            ANCHOR_MODES,
            events_from_observations,
            main_resolvers,
            uses_external_resolver,
        )
        from phloem.iot.sources import open_observations

        idt = _load_identifier(model_path)
        obs, stats = open_observations(capture, kind=source, year=year)
        if anchor not in ANCHOR_MODES:
            raise ConfigError("--anchor", f"unknown {anchor!r}", ANCHOR_MODES)
        events = events_from_observations(obs, anchor=anchor, stats=stats.events)
        answers = idt.answer_many(events, window, top=top)
        local = main_resolvers(events)  # the network's resolver, found once for all clients
        early = [w for w in idt.checkpoints if w < window]  # then the window itself
        reports = []
        for e, a in zip(events, answers, strict=True):
            over = [
                {
                    "s": x.elapsed_s,
                    "device": x.top[0].label,
                    "p": round(x.confidence, 3),
                    "unknown": x.unknown,
                }
                for x in [*(idt.timeline(e, early) if early else []), a]
            ]
            qs = e.window(window)
            rep = a.to_dict()
            rep.update(
                first_seen=datetime.fromtimestamp(e.anchor_utc, tz=UTC).isoformat(
                    timespec="seconds"
                ),
                over_time=over,
                names=sorted({q.name for q in qs}),
                no_dns=not qs,
                external_resolver=uses_external_resolver(e, local),
            )
            reports.append(rep)
        return reports, stats.summary()

    reports, summary = guarded(go)
    t = Table(title=f"{capture.name}: {len(reports)} DNS clients (window {window:g} s)")
    for c in ("key / first seen", "device > manufacturer > category", "over time", "why", "flags"):
        t.add_column(c)
    for r in reports:
        lines = [f"{x['label']} {x['p']:.2f}" for x in r["top"]]
        if r["manufacturer"]:
            lines.append(f"> {r['manufacturer']['label']} {r['manufacturer']['p']:.2f}")
            lines.append(f"> {r['category']['label']} {r['category']['p']:.2f}")
        over, last = [], None
        for o in r["over_time"]:
            label = "" if o["device"] == last else f" {o['device']}"
            over.append(f"{o['s']:g}s{label} {o['p']:.2f}" + (" (unknown)" if o["unknown"] else ""))
            last = o["device"]
        why = "\n".join(f"{w} (-{d:.2f})" for w, d in r["drivers"]) or "-"
        flags = [
            f
            for f, on in (
                ("UNKNOWN device", r["unknown"]),
                ("no DNS", r["no_dns"]),
                ("external resolver", r["external_resolver"]),
            )
            if on
        ]
        t.add_row(
            f"{r['key']}\n{r['first_seen']}",
            "\n".join(lines),
            "\n".join(over),
            why,
            ", ".join(flags) or "-",
        )
    console.print(t)
    console.print(summary)
    if json_out is not None:
        json_out.write_text(json.dumps(reports, indent=1))


@app.command("monitor")
def monitor(
    source_path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[SOURCE]",
            help="A capture, a dnsmasq/Pi-hole/unbound log or Pi-hole's FTL database "
            "(omit with --interface).",
        ),
    ] = None,
    model_path: Annotated[Path, typer.Option("--model", help="A model from `iot train`.")] = Path(
        "iot-model.npz"
    ),
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep reading as the log/database grows.")
    ] = False,
    interface: Annotated[
        str | None, typer.Option("--interface", "-i", help="Capture live here (CAP_NET_RAW).")
    ] = None,
    source: Annotated[str, typer.Option(help="auto, pcap, dnsmasq, unbound, ftl.")] = "auto",
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
    year: Annotated[int | None, typer.Option(help="Year of dnsmasq lines (default: now).")] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(help="Live sources: stop after this many seconds without an observation."),
    ] = None,
) -> None:
    """Any-time identification as JSON lines: join, identified (first confident answer),
    revised, unknown and final (at the horizon) per client. Replays a file, follows a growing
    log (--follow) or captures on an interface (--interface)."""

    def go() -> str:
        from phloem.iot.sources import open_observations
        from phloem.iot.stream import Tracker

        if anchor not in ("dhcp-or-first-query", "first-query"):
            raise ConfigError(
                "--anchor", f"unknown {anchor!r}", ("dhcp-or-first-query", "first-query")
            )
        idt = _load_identifier(model_path)
        live = follow or interface is not None
        stop = threading.Event()
        local = (datetime.now().astimezone().tzinfo or UTC) if live else UTC
        obs, stats = open_observations(
            source_path,
            kind=source,
            follow=follow,
            interface=interface,
            year=year,
            tz=local,
            stop=stop,
        )
        tracker = Tracker(
            idt,
            horizon_s=horizon,
            confidence=confidence,
            anchor=anchor,
            rejoin_after_s=rejoin_after,
            explain=explain,
        )
        sink = out.open("a", encoding="utf-8") if out is not None else sys.stdout

        def emit(lines: list[dict[str, Any]]) -> None:
            for line in lines:
                sink.write(json.dumps(line) + "\n")
            sink.flush()

        try:
            if not live:
                for ob in obs:
                    emit(tracker.feed(ob))
            else:
                _pump(obs, tracker, emit, stop, idle_timeout)
        except KeyboardInterrupt:
            pass  # Ctrl-C / SIGTERM: every open client still gets its final line
        finally:
            stop.set()
            emit(tracker.close())
            if out is not None:
                sink.close()
        return stats.summary()

    summary = guarded(go)
    Console(stderr=True).print(summary)


def _pump(
    obs: Any, tracker: Any, emit: Any, stop: threading.Event, idle_timeout: float | None
) -> None:
    """Read a live source in a thread; tick the tracker's clock twice a second meanwhile."""
    q: queue.Queue[Any] = queue.Queue(maxsize=10_000)
    done = object()
    failure: list[BaseException] = []

    def reader() -> None:
        try:
            for ob in obs:
                q.put(ob)
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)
        finally:
            q.put(done)

    threading.Thread(target=reader, name="phloem-monitor-reader", daemon=True).start()
    last = time.monotonic()
    while True:
        try:
            item = q.get(timeout=0.5)
        except queue.Empty:
            emit(tracker.advance(time.time()))
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                stop.set()  # the reader notices within its poll period and finishes
            continue
        last = time.monotonic()
        if item is done:
            break
        emit(tracker.feed(item))
    if failure:
        raise failure[0]
