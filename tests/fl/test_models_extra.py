"""char_lstm, resnet20 and femnist_cnn; top-5 accuracy and perplexity in evaluation; the
``run.device`` option. Each fast path is checked against plain PyTorch on a copy."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.core.errors import ConfigError
from phloem.core.rng import SeedStreams
from phloem.data.dataset import ArrayDataset, Partition
from phloem.fl.archs import CharLSTMNet, ResNet20Params, femnist_cnn, resnet20
from phloem.fl.config import RunConfig, load_config
from phloem.fl.experiment import build_experiment, build_problem, resolve_device
from phloem.fl.models import FlatModule, build_model, seeded
from phloem.fl.problem import ModelProblem
from phloem.fl.simulate import simulate

runner = CliRunner()
CUDA = torch.cuda.is_available()
SHAKESPEARE = "shakespeare/shaks12.txt.gz"


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def flat_of(m: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


# ---------------------------------------------------------------- shapes and parameter counts


def test_resnet20_has_the_papers_027m_parameters() -> None:
    # option A: no parameters in the shortcuts; 19 3x3 convolutions + 19 affine norms + fc
    convs = 3 * 16 * 9 + 6 * 16 * 16 * 9 + (16 * 32 + 5 * 32 * 32) * 9 + (32 * 64 + 5 * 64 * 64) * 9
    norms = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    fc = 64 * 10 + 10
    for norm in ("group", "batch"):
        m = resnet20(10, 3, norm)
        assert n_params(m) == convs + norms + fc == 269_722
        assert not list(m.buffers())  # nothing outside the flat vector
    conv_biases = 16 + 6 * 16 + 6 * 32 + 6 * 64
    assert n_params(resnet20(10, 3, "none")) == convs + conv_biases + fc
    out = resnet20()(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10)
    n_convs = sum(isinstance(x, nn.Conv2d) for x in resnet20().modules())
    assert n_convs == 19  # + the fc layer: 20 weighted layers


def test_resnet20_option_a_shortcut_is_subsample_and_zero_pad() -> None:
    block = resnet20(10, 3, "none").features[6]  # first block of stage 2 (16 -> 32, stride 2)
    for p in block.parameters():
        nn.init.zeros_(p)
    x = torch.rand(2, 16, 8, 8)
    out = block(x)  # the residual branch is zero: out = relu(shortcut)
    assert torch.equal(out[:, 8:24], torch.relu(x[:, :, ::2, ::2]))
    assert torch.equal(out[:, :8], torch.zeros(2, 8, 4, 4))
    assert torch.equal(out[:, 24:], torch.zeros(2, 8, 4, 4))


def test_femnist_cnn_is_leafs_by_formula() -> None:
    c, k = 1, 62
    expected = (25 * c + 1) * 32 + (25 * 32 + 1) * 64 + (7 * 7 * 64 + 1) * 2048 + (2048 + 1) * k
    m = femnist_cnn(k, c)
    assert n_params(m) == expected == 6_603_710
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 62)
    with pytest.raises(ValueError, match="28, 28"):
        build_model("femnist_cnn", (3, 32, 32), 10)


@pytest.mark.parametrize(("embed", "hidden", "layers"), [(8, 256, 2), (3, 5, 1), (4, 6, 3)])
def test_char_lstm_parameter_count(embed: int, hidden: int, layers: int) -> None:
    v = 80
    lstm = 4 * hidden * (embed + hidden) + 8 * hidden
    lstm += (layers - 1) * (4 * hidden * (2 * hidden) + 8 * hidden)
    expected = v * embed + lstm + hidden * v + v
    m = CharLSTMNet(v, embed, hidden, layers)
    assert n_params(m) == expected
    assert m(torch.randint(0, v, (4, 80))).shape == (4, v)


def test_char_lstm_flat_gradient_equals_autograd() -> None:
    module = seeded(lambda: CharLSTMNet(80, 4, 7, 2), 1)
    reference = copy.deepcopy(module)
    flat = FlatModule(module)
    x, y = torch.randint(0, 80, (6, 80)), torch.randint(0, 80, (6,))
    flat.grad.zero_()
    nn.functional.cross_entropy(flat.module(x), y).backward()  # type: ignore[no-untyped-call]
    loss = nn.functional.cross_entropy(reference(x), y)
    g = torch.autograd.grad(loss, list(reference.parameters()))
    torch.testing.assert_close(flat.grad, torch.cat([t.reshape(-1) for t in g]))
    # a step on the flat vector is seen by the LSTM
    flat.flat.add_(flat.grad, alpha=-0.5)
    with torch.no_grad():
        for p, gi in zip(reference.parameters(), g, strict=True):
            p.add_(gi, alpha=-0.5)
    torch.testing.assert_close(flat.module(x), reference(x))


def test_batch_norm_choice_has_no_running_statistics() -> None:
    m = resnet20(10, 3, "batch")
    FlatModule(m)  # accepted: parameters only
    x = torch.rand(4, 3, 32, 32)
    # batch statistics in every pass: a row's output depends on the batch it comes with
    assert not torch.allclose(m(x)[:2], m(x[:2]))
    with pytest.raises(ValueError, match="buffers"):
        FlatModule(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))


def test_bad_model_options_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"model.groups"):
        ResNet20Params(groups=3)
    base = {"data": {"dataset": "digits"}, "model": {"name": "resnet20", "norm": "layer"}}
    with pytest.raises(ConfigError, match="group"):
        load_config(None, [], base)
    with pytest.raises(ConfigError, match=r"model.hidden"):
        load_config(None, [], {"model": {"name": "char_lstm", "hidden": 0}})


# ---------------------------------------------------------------- evaluation: top-5, perplexity


def _token_problem(seed: int = 0, n: int = 60, classes: int = 80) -> ModelProblem:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, classes, (n, 12)).astype(np.int64)
    y = rng.integers(0, classes, n).astype(np.int64)
    train = ArrayDataset(x, y, classes, np.arange(n) % 3)
    test = ArrayDataset(x[:25], (y[:25] + 1) % classes, classes)
    part = Partition.from_lists([np.arange(i, n, 3) for i in range(3)])
    module = seeded(lambda: CharLSTMNet(classes, 3, 8, 1), seed)
    return ModelProblem(module, train, test, part, perplexity=True)


def test_token_inputs_stay_int64_through_the_batching() -> None:
    p = _token_problem()
    assert p._x.dtype == torch.long and p._xt.dtype == torch.long
    oracle = p.client(1)
    w = oracle.workspace(p.initial_point(torch.Generator()))
    g, loss = oracle.batch_grad(w, torch.tensor([0, 3, 5]))
    assert g.shape == (p.dim,) and torch.isfinite(loss)


def test_perplexity_and_top5_equal_a_direct_computation() -> None:
    p = _token_problem()
    x = p.initial_point(torch.Generator()) + 0.3 * torch.randn(
        p.dim, generator=torch.Generator().manual_seed(2)
    )
    got = p.evaluate(x, full=False)
    ref = CharLSTMNet(80, 3, 8, 1)
    torch.nn.utils.vector_to_parameters(x.clone(), ref.parameters())
    xt, yt = torch.as_tensor(p._xt), torch.as_tensor(p._yt)
    with torch.no_grad():
        logits = ref(xt)
    ce = float(nn.functional.cross_entropy(logits, yt))
    assert got["test_loss"] == pytest.approx(ce, rel=1e-6)
    assert got["test_perplexity"] == pytest.approx(math.exp(ce), rel=1e-6)
    ranks = (logits > logits.gather(1, yt[:, None])).sum(1)  # classes scored above the label
    assert got["test_top5"] == pytest.approx(float((ranks < 5).float().mean()))
    assert got["test_acc"] == pytest.approx(float((logits.argmax(1) == yt).float().mean()))
    assert got["test_top5"] >= got["test_acc"]


def test_top5_only_with_five_classes_or_more() -> None:
    rng = np.random.default_rng(0)
    for classes, has_top5 in ((4, False), (5, True)):
        x = rng.random((30, 6)).astype(np.float32)
        y = np.arange(30) % classes
        ds = ArrayDataset(x, y, classes)
        part = Partition.from_lists([np.arange(30)])
        p = ModelProblem(seeded(lambda c=classes: nn.Linear(6, c), 0), ds, ds, part)
        out = p.evaluate(p.initial_point(torch.Generator()), full=False)
        assert ("test_top5" in out) is has_top5
        assert "test_perplexity" not in out


def _tiny_shakespeare(tmp_path: Path, **run: Any) -> dict[str, Any]:
    return {
        "data": {
            "dataset": "shakespeare",
            "num_clients": 4,
            "seq_len": 20,
            "max_clients": 4,
            "min_samples": 2000,
            "limit": 60,
            "partition": "natural",
        },
        "model": {"name": "char_lstm", "embed": 4, "hidden": 16, "layers": 1},
        "algorithm": {"name": "fedavg"},
        "local": {"solver": "sgd", "lr": 1.0, "batch_size": 10, "steps": 5},
        "sampling": {"scheme": "full"},
        "run": {"rounds": 6, "out_dir": str(tmp_path), "threads": 1, **run},
    }


def test_a_tiny_char_lstm_fedavg_run_learns(
    data_file: Callable[[str], Path], tmp_path: Path
) -> None:
    data_file(SHAKESPEARE)
    cfg = load_config(None, [], _tiny_shakespeare(tmp_path))
    exp = build_experiment(cfg)
    assert exp.problem.num_clients == 4
    res = simulate(exp.problem, exp.algorithm, exp.sampler, rounds=6, seed=exp.streams)
    first, last = res.history.rows[0], res.history.rows[-1]
    assert last["test_perplexity"] < 0.8 * first["test_perplexity"]  # ~80 at random init
    assert last["test_loss"] < first["test_loss"]
    assert last["test_perplexity"] == pytest.approx(math.exp(last["test_loss"]))
    assert last["test_top5"] >= last["test_acc"]


def test_a_model_that_cannot_read_the_data_is_refused(
    data_file: Callable[[str], Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"model.name.*char_lstm.*float features"):
        build_problem(load_config(None, [], {"model": {"name": "char_lstm"}}), SeedStreams(0))
    data_file(SHAKESPEARE)
    cfg = _tiny_shakespeare(tmp_path)
    cfg["model"] = {"name": "mlp"}
    with pytest.raises(ConfigError, match=r"token indices.*char_lstm"):
        build_problem(load_config(None, [], cfg), SeedStreams(0))


# ---------------------------------------------------------------- run.device


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:-1", "CPU", "cuda0", ""])
def test_device_spelling_is_validated(bad: str) -> None:
    with pytest.raises(ValueError, match=r"run.device must be cpu, cuda or cuda:N"):
        RunConfig(device=bad)
    for good in ("cpu", "cuda", "cuda:3"):
        assert RunConfig(device=good).device == good


def test_cuda_without_a_gpu_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as e:
        resolve_device("cuda")
    assert e.value.field == "run.device" and e.value.allowed == ("cpu",)
    assert "run.device" in str(e.value) and "torch sees no GPU" in str(e.value)
    assert resolve_device("cpu") == torch.device("cpu")
    cfg = tmp_path / "d.toml"
    cfg.write_text('[data]\ndataset = "digits"\nnum_clients = 4\n[run]\nrounds = 1\n')
    res = runner.invoke(
        app, ["fl", "run", str(cfg), "--set", "run.device=cuda", "--set", f"run.out_dir={tmp_path}"]
    )
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "config field 'run.device': = cuda but torch sees no GPU; allowed: 'cpu'" in text
    assert "Traceback" not in res.output


def test_a_gpu_index_past_the_count_and_process_workers_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"cuda:1 but torch sees 1 GPU.*'cuda:0'"):
        resolve_device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda", 0)
    base = {"data": {"dataset": "digits", "num_clients": 4}}
    cfg = load_config(None, ["run.device=cuda", "run.backend=process"], base)
    with pytest.raises(ConfigError, match=r"run.backend"):
        build_problem(cfg, SeedStreams(0))


def _digits_history(tmp_path: Path, device: str) -> list[dict[str, Any]]:
    base = {
        "data": {"dataset": "digits", "num_clients": 5},
        "model": {"name": "mlp", "hidden": [16]},
        "sampling": {"scheme": "full"},
        "local": {"solver": "sgd", "lr": 0.1, "batch_size": 16, "steps": 3},
        "run": {"rounds": 3, "device": device, "out_dir": str(tmp_path)},
    }
    exp = build_experiment(load_config(None, [], base))
    res = simulate(exp.problem, exp.algorithm, exp.sampler, rounds=3, seed=exp.streams)
    assert res.x.device.type == "cpu"  # the algorithms' vectors stay on the CPU
    return res.history.rows


def test_the_cpu_device_path_runs(tmp_path: Path) -> None:
    rows = _digits_history(tmp_path, "cpu")
    assert rows[-1]["test_loss"] < rows[0]["test_loss"]


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_matches_cpu(tmp_path: Path) -> None:
    cpu, gpu = _digits_history(tmp_path, "cpu"), _digits_history(tmp_path, "cuda")
    for a, b in zip(cpu, gpu, strict=True):
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4, abs=1e-5)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_char_lstm_and_resnet_gradients_match_cpu() -> None:
    for factory, x, y in (
        (
            lambda: CharLSTMNet(80, 4, 8, 2),
            torch.randint(0, 80, (5, 20)),
            torch.randint(0, 80, (5,)),
        ),
        (lambda: resnet20(10, 3, "group"), torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))),
    ):
        grads = []
        for dev in ("cpu", "cuda"):
            f = FlatModule(seeded(factory, 0), device=dev)
            f.grad.zero_()
            loss = nn.functional.cross_entropy(f.module(x.to(dev)), y.to(dev))
            loss.backward()  # type: ignore[no-untyped-call]
            grads.append(f.grad.cpu())
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-4)


def test_cifar10_limit_test_is_validated() -> None:
    from phloem.data.datasets import Cifar10Params

    with pytest.raises(ValueError, match=r"data\.limit_test"):
        Cifar10Params(limit_test=0)
    assert Cifar10Params(limit_test=100).limit_test == 100


def test_femnist_cnn_on_the_femnist_writers(data_file: Callable[[str], Path]) -> None:
    data_file("femnist/femnist_leaf_sample.npz")
    base = {
        "data": {"dataset": "femnist", "partition": "natural", "num_clients": 105},
        "model": {"name": "femnist_cnn"},
    }
    problem = build_problem(load_config(None, [], base), SeedStreams(0))
    assert problem.num_clients == 105 and problem.dim == 6_603_710
    x0 = problem.initial_point(torch.Generator())
    out = problem.evaluate(x0, full=False)
    assert 0.0 <= out["test_acc"] <= out["test_top5"] <= 1.0
    oracle = problem.client(0)
    g, loss = oracle.batch_grad(oracle.workspace(x0), torch.arange(8))
    assert g.shape == (problem.dim,) and float(loss) == pytest.approx(math.log(62), rel=0.1)
