"""phloem's SecAgg+ in a real Flower deployment: a SuperLink and 3 SuperNodes on loopback.

``examples/flower_secagg`` runs under ``flwr run`` for 2 rounds (each SuperNode starts a fresh
ClientApp process per message, over HTTP, as in production). In round 2 the SuperNode of
partition 2 -- with its SuperExec and ClientApp processes -- is SIGKILLed while its ClientApp
holds the ``share_keys`` request. The round must go on without it once the stage timeout has
passed, and end with the weighted mean of the two other clients' models; round 1 includes
all three.

Reference: each client's training is deterministic (``task.train_locally``), so the test
recomputes every client's model from the global model the server logged, and compares the
secure aggregate with their plain ``num_examples``-weighted mean. Tolerance: the quantisation
bound of :mod:`phloem.secagg.quantize`, ``1.5 n max_weight step / W`` (``n`` clients in the
sum, ``W`` their total weight), plus 1e-6 for the float32 global model.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "flower_secagg"
sys.path.insert(0, str(EXAMPLE))

from local_deployment import LocalDeployment  # noqa: E402
from phloem_secagg_app import task  # noqa: E402

NODES, VICTIM, KILL_ROUND = 3, 2, 2
#: a stage takes about 5 s on an idle 2-core machine (Flower's polling and a ClientApp process
#: start, see benchmarks/secagg/deployment); the margin is for a loaded CI machine
STAGE_TIMEOUT_S = 20.0

#: the test's ClientApp: the example's, behind a mod that parks the victim's ClientApp on the
#: share_keys request of KILL_ROUND (after telling the test so) until the test kills its node
STALLING_CLIENT = """
import os
import time
from pathlib import Path

from flwr.client import ClientApp

from phloem.secagg.flower import RECORD_KEY, phloem_secagg_mod
from phloem_secagg_app.client_app import client_fn


def stall(msg, ctxt, call_next):
    record = msg.content.config_records.get(RECORD_KEY) if msg.has_content() else None
    stall_round = ctxt.node_config.get("stall-round")
    if (
        record is not None
        and stall_round is not None
        and record.get("stage") == "share_keys"
        and msg.metadata.group_id == str(stall_round)
    ):
        marker = Path(str(ctxt.node_config["marker-dir"])) / "share_keys"
        marker.write_text(str(os.getpid()))
        time.sleep(600)  # until SIGKILL
    return call_next(msg, ctxt)


app = ClientApp(client_fn=client_fn, mods=[stall, phloem_secagg_mod])
"""


def _test_app(dest: Path) -> Path:
    """The example app, with the stalling ClientApp as its clientapp component."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "phloem_secagg_app" / "stalling_client.py").write_text(STALLING_CLIENT)
    pyproject = dest / "pyproject.toml"
    text = pyproject.read_text()
    old = 'clientapp = "phloem_secagg_app.client_app:app"'
    assert old in text
    pyproject.write_text(text.replace(old, 'clientapp = "phloem_secagg_app.stalling_client:app"'))
    return dest


def _expected(pids: list[int], start: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """The plain weighted mean of ``pids``' models trained from ``start``, and their weight."""
    fits = [task.train_locally(p, start) for p in pids]
    w = np.array([f[1] for f in fits], dtype=np.float64)
    x = np.stack([np.concatenate([a.ravel() for a in f[0]]).astype(np.float64) for f in fits])
    return (w[:, None] * x).sum(0) / w.sum(), float(w.sum())


def _check_round(entry: dict[str, Any], pids: list[int], start: list[np.ndarray]) -> None:
    assert entry["aborted"] is None, entry["aborted"]
    assert entry["included"] == len(pids), entry
    expected, total = _expected(pids, start)
    got = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in entry["parameters"]])
    bound = 1.5 * len(pids) * entry["max_weight"] * entry["step"] / total
    err = float(np.max(np.abs(got - expected)))
    assert err <= bound + 1e-6, (err, bound)


@pytest.mark.slow
def test_a_node_killed_during_share_keys_leaves_the_mean_of_the_others(tmp_path: Path) -> None:
    app = _test_app(tmp_path / "app")
    results, markers = tmp_path / "rounds.jsonl", tmp_path / "markers"
    markers.mkdir()
    victim_config = f'stall-round={KILL_ROUND} marker-dir="{markers}"'
    run_config = (
        f"num-nodes={NODES} num-server-rounds=2 stage-timeout-s={STAGE_TIMEOUT_S} "
        f'wait-for-nodes-s=60.0 results-file="{results}"'
    )
    env = {"PYTHONPATH": str(ROOT / "src")}
    with LocalDeployment(
        NODES, workdir=tmp_path / "deploy", env=env, node_config={VICTIM: victim_config}
    ) as deployment:
        out: dict[str, subprocess.CompletedProcess[str]] = {}
        runner = threading.Thread(
            target=lambda: out.setdefault("run", deployment.run(app, run_config, 240.0))
        )
        runner.start()
        deadline = time.monotonic() + 200.0
        while not (markers / "share_keys").exists() and time.monotonic() < deadline:
            assert runner.is_alive() or "run" not in out, out["run"].stdout[-3000:]
            time.sleep(0.1)
        assert (markers / "share_keys").exists(), deployment.logs()
        deployment.kill_node(VICTIM)  # SuperNode, SuperExec and the parked ClientApp
        runner.join(240.0)
        assert not runner.is_alive(), deployment.logs()
        run = out["run"]
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + deployment.logs()
        assert deployment.supernodes[VICTIM].poll() is not None  # really dead
    rounds = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    start = task.initial_model(20)
    _check_round(rounds[0], list(range(NODES)), start)  # everyone
    after_one = [np.asarray(a, dtype=np.float32) for a in rounds[0]["parameters"]]
    survivors = [p for p in range(NODES) if p != VICTIM]
    _check_round(rounds[1], survivors, after_one)  # the mean of the two left
    assert rounds[1]["stage_s"]["share_keys"] >= STAGE_TIMEOUT_S  # it waited for the dead node
