"""Tests for :mod:`phloem.attacks.defences`.

Statistics use fixed seeds and standard-error bounds (``Z`` standard errors of the Monte Carlo
estimate, never a loose constant). NoPeek's distance correlation is compared with a slow,
obviously correct numpy reference (explicit loops over pairs).
"""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import numpy as np
import pytest
import torch
from torch import nn

from phloem.attacks.defences import (
    Defence,
    DefendedEdge,
    GaussianNoise,
    GaussianNoiseParams,
    IRDropout,
    IRDropoutParams,
    LaplaceNoise,
    LaplaceNoiseParams,
    NoPeek,
    NoPeekParams,
    Quantise,
    QuantiseParams,
    TopKChannels,
    TopKChannelsParams,
    distance_correlation,
)
from phloem.attacks.registries import DEFENCES
from phloem.core.errors import ConfigError

SEED = 20_211_206
Z = 5.0
SHAPE = (64, 8, 6, 6)


def _gen(seed: int = SEED) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ir(shape: tuple[int, ...] = SHAPE, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A ReLU-like IR with per-sample scales that differ."""
    g = _gen(1)
    scale = torch.rand(shape[0], *([1] * (len(shape) - 1)), generator=g) * 3 + 0.5
    return (torch.randn(shape, generator=g) * scale).relu().to(dtype)


ALL: list[Defence] = [
    GaussianNoise(GaussianNoiseParams(sigma=0.3)),
    GaussianNoise(GaussianNoiseParams(sigma=0.3, relative=True)),
    LaplaceNoise(LaplaceNoiseParams(scale=0.2)),
    IRDropout(IRDropoutParams(rate=0.3)),
    IRDropout(IRDropoutParams(rate=0.3, rescale=True)),
    Quantise(QuantiseParams(bits=3)),
    TopKChannels(TopKChannelsParams(k=3)),
    NoPeek(NoPeekParams(weight=0.5)),
]


def test_registered_and_built_from_defaults() -> None:
    assert set(DEFENCES.names()) >= {
        "gaussian_noise",
        "laplace_noise",
        "ir_dropout",
        "quantise",
        "topk_channels",
        "nopeek",
    }
    for name in DEFENCES.names():
        cls = DEFENCES.get(name)
        d = cls()
        assert isinstance(d, Defence) and d.params == cls.Params()
        with pytest.raises(FrozenInstanceError):
            d.params.__setattr__("x", 1)


@pytest.mark.parametrize("d", ALL, ids=lambda d: d.name)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_seed(d: Defence, dtype: torch.dtype) -> None:
    ir = _ir(dtype=dtype)
    out = d.apply(ir, _gen())
    assert out.shape == ir.shape and out.dtype == dtype
    assert torch.equal(out, d.apply(ir, _gen()))  # same seed, bit-identical
    assert torch.equal(ir, _ir(dtype=dtype))  # input untouched


@pytest.mark.parametrize("d", ALL[:5], ids=lambda d: d.name)
def test_random_defences_use_only_the_generator(d: Defence) -> None:
    ir = _ir()
    torch.manual_seed(0)
    a = d.apply(ir, _gen())
    torch.manual_seed(1)
    b = d.apply(ir, _gen())
    assert torch.equal(a, b)
    assert not torch.equal(a, d.apply(ir, _gen(SEED + 1)))


# --------------------------------------------------------------------------- noise


def _check_std(e: torch.Tensor, want: float) -> None:
    """The sample std of ``e`` (zero mean) is ``want`` within ``Z`` standard errors."""
    e = e.double().flatten()
    m = e.numel()
    var = float((e * e).mean())
    kurt = float((e**4).mean()) / var**2
    se_var = math.sqrt((kurt - 1) * var**2 / m)
    assert abs(var - want**2) < Z * se_var, (var, want**2, se_var)
    assert abs(float(e.mean())) < Z * math.sqrt(var / m)


def test_gaussian_noise_std_absolute() -> None:
    ir = torch.zeros(2000, 4, 5, 5)
    out = GaussianNoise(GaussianNoiseParams(sigma=0.7)).apply(ir, _gen())
    _check_std(out - ir, 0.7)


def test_gaussian_noise_std_relative_to_each_sample() -> None:
    ir = _ir((400, 8, 6, 6), torch.float64)
    out = GaussianNoise(GaussianNoiseParams(sigma=0.5, relative=True)).apply(ir, _gen())
    std = ir.flatten(1).std(dim=1, correction=0)
    for i in (0, 17, 399):
        _check_std(out[i] - ir[i], 0.5 * float(std[i]))
    # normalised by each sample's std, all the noise is N(0, 0.5^2)
    _check_std((out - ir) / std.view(-1, 1, 1, 1), 0.5)


def test_laplace_noise_std_and_law() -> None:
    b = 0.4
    ir = torch.zeros(4000, 4, 5, 5, dtype=torch.float64)
    e = LaplaceNoise(LaplaceNoiseParams(scale=b)).apply(ir, _gen())
    _check_std(e, math.sqrt(2) * b)
    # E|e| = b (a Laplace law, not a Gaussian of the same std: E|e| = 0.798 sigma)
    a = e.abs().flatten()
    assert abs(float(a.mean()) - b) < Z * float(a.std()) / math.sqrt(a.numel())


def test_zero_noise_is_identity() -> None:
    ir = _ir()
    assert torch.equal(GaussianNoise(GaussianNoiseParams(sigma=0.0)).apply(ir, _gen()), ir)
    assert torch.equal(LaplaceNoise(LaplaceNoiseParams(scale=0.0)).apply(ir, _gen()), ir)


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_fraction_and_scaling(rate: float) -> None:
    ir = torch.rand(500, 8, 6, 6) + 0.5  # no zeros to start with
    out = IRDropout(IRDropoutParams(rate=rate)).apply(ir, _gen())
    zero = out == 0
    m = zero.numel()
    frac = float(zero.float().mean())
    assert abs(frac - rate) < Z * math.sqrt(rate * (1 - rate) / m)
    assert torch.equal(out[~zero], ir[~zero])  # kept entries unchanged (He et al.)
    scaled = IRDropout(IRDropoutParams(rate=rate, rescale=True)).apply(ir, _gen())
    assert torch.equal(scaled == 0, zero)  # same draws
    torch.testing.assert_close(scaled[~zero], ir[~zero] / (1 - rate))


def test_dropout_rate_zero_is_identity() -> None:
    ir = _ir()
    assert torch.equal(IRDropout(IRDropoutParams(rate=0.0)).apply(ir, _gen()), ir)


# --------------------------------------------------------------------------- quantise


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_quantise_levels(bits: int) -> None:
    g = _gen()
    ir = torch.rand(10, 4, 8, 8, generator=g, dtype=torch.float64) * 5 - 1
    out = Quantise(QuantiseParams(bits=bits)).apply(ir, g)
    levels = 2**bits
    for i in range(10):
        lo, hi = float(ir[i].min()), float(ir[i].max())
        values = torch.unique(out[i])
        assert len(values) == levels  # 256 uniform entries cover every level
        want = torch.linspace(lo, hi, levels, dtype=torch.float64)
        torch.testing.assert_close(values, want)
        step = (hi - lo) / (levels - 1)
        assert float((out[i] - ir[i]).abs().max()) <= step / 2 + 1e-12  # nearest level


def test_quantise_constant_sample_and_gradient() -> None:
    ir = torch.ones(2, 3, 4, 4)
    ir[1] = torch.linspace(0, 1, 48).view(3, 4, 4)
    ir.requires_grad_(True)
    out = Quantise(QuantiseParams(bits=2)).apply(ir, _gen())
    assert torch.equal(out[0].detach(), ir[0].detach())
    out.sum().backward()
    assert ir.grad is not None
    assert torch.equal(ir.grad, torch.ones_like(ir))  # straight-through


# --------------------------------------------------------------------------- top-k


def test_topk_keeps_exactly_k_largest_mean_channels() -> None:
    ir = _ir((50, 10, 5, 5))
    for k in (1, 3, 10, 12):
        out = TopKChannels(TopKChannelsParams(k=k)).apply(ir, _gen())
        means = ir.flatten(2).mean(dim=2)
        for i in range(50):
            kept = [c for c in range(10) if out[i, c].abs().sum() > 0]
            assert len(kept) == min(k, 10)
            dropped = [c for c in range(10) if c not in kept]
            assert all(torch.equal(out[i, c], ir[i, c]) for c in kept)
            if dropped:
                assert float(means[i, kept].min()) >= float(means[i, dropped].max())
                assert (out[i, dropped] == 0).all()


def test_topk_ties_lowest_index_and_fraction() -> None:
    ir = torch.ones(2, 6, 3, 3)  # all channels equal: the first k are kept
    out = TopKChannels(TopKChannelsParams(fraction=0.5)).apply(ir, _gen())
    kept = (out.flatten(2).sum(dim=2) > 0).int()
    assert kept.tolist() == [[1, 1, 1, 0, 0, 0]] * 2
    assert TopKChannelsParams(fraction=0.01).k_for(6) == 1
    assert TopKChannelsParams(fraction=0.34).k_for(6) == 3  # ceil(2.04)
    assert TopKChannelsParams().fraction == 0.5
    flat = torch.tensor([[3.0, -1.0, 2.0, 5.0]])  # (N, C) IR: each channel a scalar
    out2 = TopKChannels(TopKChannelsParams(k=2)).apply(flat, _gen())
    assert out2.tolist() == [[3.0, 0.0, 0.0, 5.0]]


# --------------------------------------------------------------------------- nopeek


def _dcor_reference(x: np.ndarray, z: np.ndarray) -> float:
    """Biased sample distance correlation, Székely, Rizzo & Bakirov (2007), by the book."""
    n = len(x)

    def centred(v: np.ndarray) -> np.ndarray:
        d = np.array([[np.linalg.norm(v[i] - v[j]) for j in range(n)] for i in range(n)])
        out = np.empty_like(d)
        for i in range(n):
            for j in range(n):
                out[i, j] = d[i, j] - d[i, :].mean() - d[:, j].mean() + d.mean()
        return out

    a, b = centred(x.reshape(n, -1)), centred(z.reshape(n, -1))
    dcov2 = (a * b).sum() / n**2
    dvar_x, dvar_z = (a * a).sum() / n**2, (b * b).sum() / n**2
    if dvar_x * dvar_z == 0:
        return 0.0
    return float(math.sqrt(dcov2 / math.sqrt(dvar_x * dvar_z)))


@pytest.mark.parametrize("n", [2, 5, 17])
def test_distance_correlation_equals_reference(n: int) -> None:
    g = _gen(n)
    x = torch.rand(n, 1, 4, 4, generator=g, dtype=torch.float64)
    z = torch.tanh(x.flatten(1) @ torch.randn(16, 6, generator=g, dtype=torch.float64))
    z = z + 0.3 * torch.randn(n, 6, generator=g, dtype=torch.float64)
    got = float(distance_correlation(x, z))
    assert got == pytest.approx(_dcor_reference(x.numpy(), z.numpy()), abs=1e-10)


def test_distance_correlation_extremes() -> None:
    g = _gen()
    x = torch.rand(64, 3, 8, 8, generator=g, dtype=torch.float64)
    assert float(distance_correlation(x, x)) == pytest.approx(1.0, abs=1e-10)
    # an isometry (rotation + shift + permutation of coordinates) keeps dCor at 1
    assert float(distance_correlation(x, x.flatten(1).flip(1) + 3)) == pytest.approx(1.0)
    # independent low-dimensional samples: small, and shrinking with N (biased: not 0)
    a2, b2 = (torch.rand(2, 1024, 2, generator=g, dtype=torch.float64)).unbind(0)
    small = float(distance_correlation(a2, b2))
    assert 0 < small < 0.15
    assert float(distance_correlation(a2[:64], b2[:64])) > small
    # the biased estimator's known high-dimension bias: independent image-sized samples are
    # far from 0 (Székely & Rizzo 2013), so only changes of the penalty mean something
    noise = torch.rand(64, 512, generator=g, dtype=torch.float64)
    assert float(distance_correlation(x, noise)) > 0.8
    const = torch.ones(64, 20, dtype=torch.float64)
    assert float(distance_correlation(x, const)) == 0.0


def test_nopeek_penalty_and_gradient() -> None:
    g = _gen()
    x = torch.rand(32, 1, 8, 8, generator=g)
    edge = nn.Sequential(nn.Flatten(), nn.Linear(64, 16))
    d = NoPeek(NoPeekParams(weight=0.25))
    assert d.trains_victim
    ir = edge(x)
    assert torch.equal(d.apply(ir, g), ir)
    pen = d.penalty(x, ir)
    assert pen.shape == () and float(pen.detach()) == pytest.approx(
        0.25 * _dcor_reference(x.double().numpy(), ir.detach().double().numpy()), rel=1e-4
    )
    pen.backward()
    for p in edge.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    # repeated rows (zero distances) keep the gradient finite
    xr = torch.cat([x[:4], x[:4]])
    z = xr.flatten(1).clone().requires_grad_(True)
    distance_correlation(xr, z).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


# --------------------------------------------------------------------------- composition


def test_defended_edge_applies_in_order() -> None:
    edge = nn.Sequential(nn.Flatten(), nn.Linear(12, 12), nn.Unflatten(1, (3, 2, 2)))
    x = torch.rand(20, 3, 2, 2, generator=_gen(2))
    noise = GaussianNoise(GaussianNoiseParams(sigma=0.5))
    quant = Quantise(QuantiseParams(bits=2))
    with torch.no_grad():
        ir = edge(x)
        noise_then_quant = DefendedEdge(edge, [noise, quant], _gen())(x)
        quant_then_noise = DefendedEdge(edge, [quant, noise], _gen())(x)
        assert torch.equal(noise_then_quant, quant.apply(noise.apply(ir, _gen()), _gen()))
        assert torch.equal(quant_then_noise, noise.apply(quant.apply(ir, _gen()), _gen()))
        assert not torch.equal(noise_then_quant, quant_then_noise)
        assert all(len(torch.unique(s)) <= 4 for s in noise_then_quant)
        # the generator is shared and advances: two calls differ, a reseeded edge repeats
        defended = DefendedEdge(edge, [noise], _gen())
        assert not torch.equal(defended(x), defended(x))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("params", "kwargs", "field"),
    [
        (GaussianNoiseParams, {"sigma": float("nan")}, "sigma"),
        (GaussianNoiseParams, {"sigma": -0.1}, "sigma"),
        (GaussianNoiseParams, {"sigma": math.inf}, "sigma"),
        (GaussianNoiseParams, {"sigma": "0.1"}, "sigma"),
        (GaussianNoiseParams, {"relative": 1}, "relative"),
        (LaplaceNoiseParams, {"scale": float("nan")}, "scale"),
        (LaplaceNoiseParams, {"scale": -1}, "scale"),
        (IRDropoutParams, {"rate": 1.0}, "rate"),
        (IRDropoutParams, {"rate": -0.01}, "rate"),
        (IRDropoutParams, {"rate": float("nan")}, "rate"),
        (IRDropoutParams, {"rescale": "yes"}, "rescale"),
        (QuantiseParams, {"bits": 0}, "bits"),
        (QuantiseParams, {"bits": 17}, "bits"),
        (QuantiseParams, {"bits": 2.5}, "bits"),
        (QuantiseParams, {"bits": True}, "bits"),
        (TopKChannelsParams, {"k": 0}, "k"),
        (TopKChannelsParams, {"fraction": 0.0}, "fraction"),
        (TopKChannelsParams, {"fraction": 1.5}, "fraction"),
        (TopKChannelsParams, {"fraction": float("nan")}, "fraction"),
        (TopKChannelsParams, {"k": 2, "fraction": 0.5}, "fraction"),
        (NoPeekParams, {"weight": -1.0}, "weight"),
        (NoPeekParams, {"weight": float("nan")}, "weight"),
    ],
)
def test_params_errors_name_the_field(
    params: type[object], kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        params(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


def test_params_normalise_numbers() -> None:
    assert GaussianNoiseParams(sigma=1).sigma == 1.0
    assert isinstance(GaussianNoiseParams(sigma=1).sigma, float)
    assert QuantiseParams(bits=np.int64(4)).bits == 4  # type: ignore[arg-type]
    assert type(QuantiseParams(bits=np.int64(4)).bits) is int  # type: ignore[arg-type]
