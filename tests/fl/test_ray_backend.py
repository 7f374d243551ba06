"""The Ray backend: histories bit-identical to the serial backend's, on a local Ray instance.

One Ray instance (2 CPUs) serves the whole module; starting one costs seconds.
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError, PhloemError
from phloem.core.rng import SeedStreams
from phloem.core.rundir import RunDir
from phloem.fl.algorithms.fedavg import FedAvg
from phloem.fl.algorithms.scaffold import Scaffold
from phloem.fl.backends import run_client
from phloem.fl.local import MinibatchSGD
from phloem.fl.problem import ClientOracle, Problem, QuadraticProblem
from phloem.fl.sampling import UniformCohort

sys.path.insert(0, str(Path(__file__).parent))
from test_simulate import run, small_model_problem, stripped

ray = pytest.importorskip("ray")
from phloem.fl.ray_backend import RayBackend, _Held  # noqa: E402

FEDAVG = FedAvg(local=MinibatchSGD(0.1, 16, 1))
SCAFFOLD = Scaffold(local=MinibatchSGD(0.1, 16, steps=3))


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray instance for the module (the backend joins it and leaves it running)."""
    if ray.is_initialized():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def same_states(a: list[Any], b: list[Any]) -> bool:
    def tensors(s: Any) -> list[torch.Tensor]:
        if s is None:
            return []
        if isinstance(s, torch.Tensor):
            return [s]
        return [v for v in vars(s).values() if isinstance(v, torch.Tensor)]

    return len(a) == len(b) and all(
        len(tensors(s)) == len(tensors(p))
        and all(torch.equal(u, v) for u, v in zip(tensors(s), tensors(p), strict=True))
        for s, p in zip(a, b, strict=True)
    )


# ------------------------------------------------------------------ shards, without Ray


def test_a_shard_computes_what_the_whole_problem_does() -> None:
    whole = small_model_problem()
    ids = [7, 2, 11]
    part = whole.shard(ids)
    x = whole.initial_point(torch.Generator()) + 0.01
    assert part.num_clients == 3 and len(part._y) == sum(whole.num_samples[ids])
    assert len(part._yt) == 0  # no test data travels
    for j, cid in enumerate(ids):
        a, b = whole.client(cid).grad(x), part.client(j).grad(x)
        assert torch.equal(a.grad, b.grad) and a.loss == b.loss and a.samples == b.samples
    assert np.array_equal(part.weights, whole.weights[ids])

    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 4, 4))
    quad = QuadraticProblem(m @ m.transpose(0, 2, 1), rng.normal(size=(5, 4)), np.full(5, 0.2))
    qpart = quad.shard([4, 0])
    y = torch.ones(4, dtype=torch.float64)
    assert torch.equal(qpart.client(0).grad(y).grad, quad.client(4).grad(y).grad)
    assert torch.equal(qpart.client(1).grad(y).grad, quad.client(0).grad(y).grad)


def test_a_pickled_model_problem_still_trains_its_model() -> None:
    # FlatModule's parameters alias its flat buffers; a plain pickle used to cut them loose
    whole = small_model_problem()
    copy = pickle.loads(pickle.dumps(whole.shard(range(whole.num_clients))))
    x = whole.initial_point(torch.Generator()) * 0.5
    for cid in (0, 5):
        assert torch.equal(whole.client(cid).grad(x).grad, copy.client(cid).grad(x).grad)


# ------------------------------------------------------------------ on Ray


@pytest.mark.parametrize("algo", [FEDAVG, SCAFFOLD], ids=["fedavg", "scaffold"])
def test_ray_history_is_bit_identical_to_serial(cluster: None, algo: Any) -> None:
    serial = run(small_model_problem(), algo, sampler=UniformCohort(5))
    on_ray = run(small_model_problem(), algo, sampler=UniformCohort(5), backend=RayBackend(2))
    assert stripped(on_ray.history.rows) == stripped(serial.history.rows)
    assert torch.equal(on_ray.x, serial.x)
    assert same_states(on_ray.client_states, serial.client_states)


def test_ray_resume_continues_exactly(cluster: None, tmp_path: Path) -> None:
    full = run(small_model_problem(), SCAFFOLD, rounds=8)
    rd = RunDir.create(tmp_path, "r")
    run(small_model_problem(), SCAFFOLD, rounds=5, run_dir=rd, checkpoint_every=5)
    resumed = run(
        small_model_problem(), SCAFFOLD, rounds=8, run_dir=rd, resume=True, backend=RayBackend(2)
    )
    assert stripped(resumed.history.rows) == stripped(full.history.rows)
    assert torch.equal(resumed.x, full.x)
    assert same_states(resumed.client_states, full.client_states)


def test_held_states_against_serial_when_a_round_is_not_committed(cluster: None) -> None:
    """Drive the backend by hand: a state the actor holds is reused, a state the simulator
    kept instead (its round aborted) is sent again; both match the serial computation."""

    class _Unsplittable(Problem):  # local: Ray ships it by value
        """A problem that cannot be sharded: every actor gets the whole of it."""

        def __init__(self, inner: Problem) -> None:
            self.inner = inner
            self.num_clients, self.dim, self.dtype = inner.num_clients, inner.dim, inner.dtype
            self.weights = inner.weights

        def client(self, i: int) -> ClientOracle:
            return self.inner.client(i)

        def initial_point(self, gen: torch.Generator) -> torch.Tensor:
            return self.inner.initial_point(gen)

        def evaluate(self, x: torch.Tensor, *, full: bool) -> dict[str, float]:
            return self.inner.evaluate(x, full=full)

    problem = _Unsplittable(small_model_problem())
    streams = SeedStreams(3)
    x0 = problem.initial_point(torch.Generator())
    states = [SCAFFOLD.init_client(x0, problem.client(i), torch.Generator()) for i in range(12)]
    server = SCAFFOLD.init_server(x0, states, problem.weights)
    backend = RayBackend(2)
    backend.open(problem, SCAFFOLD, streams)
    try:
        first = backend.run_round(server, 1, [(3, states[3]), (8, states[8])])
        assert backend._outgoing(3, states[3]) is states[3]  # not what the actor holds
        assert isinstance(backend._outgoing(8, first[1][1]), _Held)
        kept = backend.run_round(server, 2, [(3, states[3])])  # round 1 not committed
        held = backend.run_round(server, 3, [(8, first[1][1])])  # committed: the actor's
    finally:
        backend.close()
    for (r, cid, state), (msg, new) in zip(
        [(1, 3, states[3]), (2, 3, states[3]), (3, 8, first[1][1])],
        [first[0], kept[0], held[0]],
        strict=True,
    ):
        ref_msg, ref_new = run_client(problem, SCAFFOLD, streams, server, r, cid, state)
        assert torch.equal(ref_msg.uplink.flatten(), msg.uplink.flatten())
        assert same_states([ref_new], [new])


def test_ray_reports_client_errors_and_too_few_cpus(cluster: None) -> None:
    class Boom(FedAvg):
        def client_update(self, server, state, oracle, rng):  # type: ignore[no-untyped-def]
            raise RuntimeError("client exploded")

    with pytest.raises(PhloemError, match="client exploded"):
        run(small_model_problem(), Boom(), rounds=1, backend=RayBackend(2))
    with pytest.raises(ConfigError, match=r"run\.workers.*need 3 CPUs; the Ray cluster has 2"):
        run(small_model_problem(), FEDAVG, rounds=1, backend=RayBackend(3))


# ------------------------------------------------------------------ careless users


def test_an_unreachable_address_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run\.ray_address.*cannot reach.*127\.0\.0\.1:1"):
        RayBackend(2, address="ray://127.0.0.1:1").open(
            small_model_problem(), FEDAVG, SeedStreams(0)
        )
    with pytest.raises(ConfigError, match=r"run\.ray_address.*names no host and port"):
        RayBackend(2, address="ray://").open(small_model_problem(), FEDAVG, SeedStreams(0))
    cfg = tmp_path / "q.toml"
    cfg.write_text('[data]\ndataset = "quadratic"\nnum_clients = 12\n[run]\nrounds = 1\n')
    res = CliRunner().invoke(
        app,
        ["fl", "run", str(cfg), "--no-progress", "--set", f"run.out_dir={tmp_path}",
         "--set", "run.backend=ray", "--set", "run.ray_address=127.0.0.1:1"],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "run.ray_address" in res.output and "Traceback" not in res.output


def test_without_ray_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError, match=r"run\.backend.*pip install 'phloem\[ray\]'"):
        RayBackend(2).open(small_model_problem(), FEDAVG, SeedStreams(0))


def test_the_help_and_building_the_backend_import_no_ray() -> None:
    code = (
        "import sys\n"
        "from phloem.cli.app import main\n"
        "sys.argv = ['phloem', 'fl', 'run', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert not {'ray', 'torch'} & set(sys.modules), 'help imported ray or torch'\n"
        "from phloem.fl.config import load_config\n"
        "from phloem.fl.experiment import build_backend\n"
        "b = build_backend(load_config(None, ['run.backend=ray', 'run.ray_address=auto']))\n"
        "assert type(b).__name__ == 'RayBackend' and b.address == 'auto'\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout
