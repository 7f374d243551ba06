"""500 captures identified in one call, against one call per capture, in the same run.

    PYTHONPATH=src PHLOEM_DATA_DIR=../shared/data python benchmarks/iot/batch/run.py

Extracts the first N captures of the doh_iot corpus to a temporary folder, trains the default
model once (``phloem iot train``), then times whole processes: ``phloem iot identify FOLDER
--windows 0,2,60 --jsonl ... --summary ...`` (3 runs) and ``phloem iot identify FILE`` on
single captures (10 runs; the per-capture loop's cost is 500 times their median). Writes
results/batch.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
N = 500


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    data = Path(os.environ["PHLOEM_DATA_DIR"])
    phloem = [sys.executable, "-m", "phloem.cli.app"]
    with tempfile.TemporaryDirectory() as tmp:
        caps = Path(tmp) / "captures"
        caps.mkdir()
        with tarfile.open(data / "iot" / "doh_iot" / "dns_only_dev.tar.gz") as tar:
            n = 0
            for m in tar:
                if m.isfile() and m.name.endswith(".pcap"):
                    f = tar.extractfile(m)
                    assert f is not None
                    (caps / f"c{n:04d}.pcap").write_bytes(f.read())
                    n += 1
                    if n == N:
                        break
        model = Path(tmp) / "model.npz"
        subprocess.run([*phloem, "iot", "train", "--out", str(model)], check=True,
                       capture_output=True)  # fmt: skip
        many = [*phloem, "iot", "identify", str(caps), "--model", str(model)]
        many += ["--windows", "0,2,60", "--jsonl", str(Path(tmp) / "o.jsonl")]
        many += ["--summary", str(Path(tmp) / "s.csv")]
        batch = [timed(many) for _ in range(3)]
        lines = sum(1 for _ in (Path(tmp) / "o.jsonl").open())
        files = sorted(caps.iterdir())[:10]
        single = [timed([*phloem, "iot", "identify", str(f), "--model", str(model)]) for f in files]
    out = {
        "captures": N, "clients": lines,
        "batch_s": batch, "batch_median_s": statistics.median(batch),
        "single_s": single, "single_median_s": statistics.median(single),
        "per_capture_loop_estimate_s": N * statistics.median(single),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
                   f"python {platform.python_version()}",
    }  # fmt: skip
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "batch.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
