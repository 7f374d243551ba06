"""The flat-parameter fast path against plain PyTorch (the slow, obviously correct reference)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from phloem.data.dataset import ArrayDataset, Partition
from phloem.fl.local import MinibatchSGD
from phloem.fl.models import FlatModule, MLPParams, build_model, cnn28, cnn32, mlp, seeded
from phloem.fl.problem import ModelProblem


def plain_grad(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = nn.functional.cross_entropy(module(x), y)
    grads = torch.autograd.grad(loss, list(module.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize(
    ("factory", "shape"),
    [
        (lambda: mlp(12, (7, 5), 4), (6, 12)),
        (lambda: cnn28(4, 1, width=4), (6, 1, 28, 28)),
        (lambda: cnn32(4, 3, width=4), (6, 3, 32, 32)),
    ],
    ids=["mlp", "cnn28", "cnn32"],
)
def test_flat_gradients_equal_autograd(
    factory: Callable[[], nn.Module], shape: tuple[int, ...]
) -> None:
    module = seeded(factory, 3)
    reference = copy.deepcopy(module)
    flat = FlatModule(module)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    flat.grad.zero_()
    nn.functional.cross_entropy(flat.module(x), y).backward()
    assert torch.allclose(flat.grad, plain_grad(reference, x, y), atol=1e-6)
    # Parameters alias the flat buffer: writing the vector changes the model.
    flat.flat.zero_()
    assert all(float(p.detach().abs().sum()) == 0.0 for p in flat.module.parameters())


def test_local_sgd_is_bit_identical_to_a_torch_optim_loop() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 10)).astype(np.float32)
    y = rng.integers(0, 4, 37)
    data = ArrayDataset(x, y, 4)
    module = seeded(lambda: mlp(10, (8,), 4), 1)
    reference = copy.deepcopy(module)
    problem = ModelProblem(module, data, data, Partition.from_lists([np.arange(37)]))
    solver = MinibatchSGD(lr=0.3, batch_size=5, epochs=2)
    ours = solver.run(
        problem.client(0),
        problem.initial_point(torch.Generator()),
        torch.Generator().manual_seed(9),
    )

    # Reference: the textbook loop, same shuffles.
    opt = torch.optim.SGD(reference.parameters(), lr=0.3)
    gen = torch.Generator().manual_seed(9)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(2):
        perm = torch.randperm(37, generator=gen)
        for lo in range(0, 37, 5):
            idx = perm[lo : lo + 5]
            opt.zero_grad()
            nn.functional.cross_entropy(reference(X[idx]), Y[idx]).backward()
            opt.step()
    expected = torch.cat([p.detach().reshape(-1) for p in reference.parameters()])
    assert torch.equal(ours.x, expected)
    assert ours.steps == 2 * 8 and ours.samples == 74


def test_build_model_shapes_and_errors() -> None:
    assert build_model("cnn", (1, 28, 28), 62)(torch.zeros(2, 1, 28, 28)).shape == (2, 62)
    assert build_model("cnn", (3, 32, 32), 10)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert build_model("mlp", (64,), 10, MLPParams((32,)))(torch.zeros(2, 64)).shape == (2, 10)
    with pytest.raises(ValueError, match="28, 28"):
        build_model("cnn", (64,), 10)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = seeded(lambda: mlp(5, (4,), 2), 7)
    b = seeded(lambda: mlp(5, (4,), 2), 7)
    assert torch.equal(torch.random.get_rng_state(), before)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_cnn_trains_on_femnist_writers(data_file: Callable[[str], Path]) -> None:
    data_file("femnist/femnist_leaf_sample.npz")
    from phloem.data import load_femnist, natural
    from phloem.fl import FedAvg, UniformCohort, simulate

    d = load_femnist()
    part = natural(d.train.groups)
    assert part.num_clients == 105
    problem = ModelProblem(seeded(lambda: cnn28(62), 0), d.train, d.test, part)
    algo = FedAvg(local=MinibatchSGD(0.05, 16, 1))
    res = simulate(problem, algo, UniformCohort(10), rounds=6, seed=0, eval_every=6)
    first, last = res.history.rows[0], res.history.last()
    assert float(last["test_loss"] or 0) < float(first["test_loss"] or 0)
    assert float(last["test_acc"] or 0) > 2.0 / 62  # well above chance after a few rounds
