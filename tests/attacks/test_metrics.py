"""Tests for :mod:`phloem.attacks.metrics` against scikit-image, the reference implementation.

Every SSIM / PSNR is compared image by image with :mod:`skimage.metrics` on the same float64
inputs (random, smooth, near-identical; grayscale and colour; 28x28, 32x32 and non-square).
The data-range pitfall is pinned: scikit-image on float images without a ``data_range`` refuses
(or, with the 2 older versions guessed or the 255 of uint8 habit, gives other numbers), and
ours fixes 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from phloem.attacks.metrics import Metric, identification_rate, mse, psnr, ssim

SEED = 20_211_206
SHAPES = [(1, 28, 28), (3, 32, 32), (1, 32, 32), (3, 28, 28), (3, 19, 41)]
TOL = 1e-5


def _pairs(kind: str, shape: tuple[int, int, int], n: int = 3) -> tuple[torch.Tensor, ...]:
    """``n`` pairs of images in [0, 1] of one kind."""
    g = torch.Generator().manual_seed(SEED)
    c, h, w = shape
    if kind == "random":
        x = torch.rand(n, c, h, w, generator=g, dtype=torch.float64)
        y = torch.rand(n, c, h, w, generator=g, dtype=torch.float64)
    elif kind == "smooth":  # low-frequency images: large local means, small variances
        yy, xx = torch.meshgrid(
            torch.linspace(0, 1, h, dtype=torch.float64),
            torch.linspace(0, 1, w, dtype=torch.float64),
            indexing="ij",
        )
        phase = torch.rand(n, c, 1, 1, generator=g, dtype=torch.float64) * 6
        x = 0.5 + 0.4 * torch.sin(3 * xx + 2 * yy + phase)
        y = 0.5 + 0.4 * torch.sin(3 * xx + 2.2 * yy + phase + 0.3)
    elif kind == "noisy":  # a reconstruction-like pair: the original plus clipped noise
        x = torch.rand(n, c, h, w, generator=g, dtype=torch.float64)
        y = (x + 0.1 * torch.randn(n, c, h, w, generator=g, dtype=torch.float64)).clamp(0, 1)
    else:
        raise AssertionError(kind)
    return x, y


def _sk_ssim(x: torch.Tensor, y: torch.Tensor, **kw: object) -> np.ndarray:
    return np.array(
        [
            structural_similarity(a.numpy(), b.numpy(), channel_axis=0, **kw)  # type: ignore[arg-type]
            for a, b in zip(x, y, strict=True)
        ]
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "smooth", "noisy"])
def test_gaussian_ssim_equals_skimage_wang(kind: str, shape: tuple[int, int, int]) -> None:
    x, y = _pairs(kind, shape)
    ours = ssim(x, y).numpy()
    ref = _sk_ssim(
        x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "smooth", "noisy"])
def test_uniform7_ssim_equals_skimage_default(kind: str, shape: tuple[int, int, int]) -> None:
    x, y = _pairs(kind, shape)
    ours = ssim(x, y, window="uniform", size=7).numpy()
    np.testing.assert_allclose(ours, _sk_ssim(x, y, data_range=1.0), atol=TOL, rtol=0)


def test_ssim_float32_input_matches() -> None:
    x, y = _pairs("noisy", (3, 32, 32))
    ours = ssim(x.float(), y.float())
    ref = _sk_ssim(
        x.float().double(),
        y.float().double(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    assert ours.dtype == torch.float64 and ours.shape == (3,)
    np.testing.assert_allclose(ours.numpy(), ref, atol=TOL, rtol=0)


def test_ssim_in_float32_arithmetic_is_close_and_differentiable() -> None:
    """The training loss's float32 SSIM agrees with the reported float64 one to 1e-5 and has
    a gradient."""
    x, y = _pairs("noisy", (3, 32, 32))
    yf = y.float().requires_grad_(True)
    low = ssim(x.float(), yf, dtype=torch.float32)
    assert low.dtype == torch.float32
    np.testing.assert_allclose(low.detach().double().numpy(), ssim(x, y).numpy(), atol=1e-5)
    low.sum().backward()
    assert yf.grad is not None and torch.isfinite(yf.grad).all() and yf.grad.abs().sum() > 0


def test_two_ssim_conventions_differ() -> None:
    """The report must say which SSIM it prints: they are different numbers."""
    x, y = _pairs("smooth", (3, 32, 32))
    assert (ssim(x, y) - ssim(x, y, window="uniform", size=7)).abs().min() > 1e-2


def test_ssim_properties() -> None:
    x, y = _pairs("random", (3, 32, 32))
    torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(ssim(x, y), ssim(y, x))
    assert ((ssim(x, y) >= -1) & (ssim(x, y) <= 1)).all()


def test_ssim_bad_inputs() -> None:
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="smaller than"):
        ssim(x, x)
    with pytest.raises(ValueError, match="shapes"):
        ssim(x, x[:1])
    with pytest.raises(ValueError, match="window"):
        ssim(x, x, window="box", size=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, size=4)


# --------------------------------------------------------------------------- data range


def test_skimage_float_without_data_range_is_refused_or_wrong() -> None:
    """The pitfall: scikit-image needs data_range for floats; 2 or 255 give other numbers."""
    x, y = _pairs("smooth", (1, 28, 28), n=1)  # low contrast: the constants matter
    a, b = x[0, 0].numpy(), y[0, 0].numpy()
    with pytest.raises(ValueError, match="data_range"):
        structural_similarity(a, b)
    right = structural_similarity(a, b, data_range=1.0)
    old_guess = structural_similarity(a, b, data_range=2.0)  # skimage < 0.20 on floats
    uint8_habit = structural_similarity(a, b, data_range=255)
    assert abs(old_guess - right) > 0.05
    assert uint8_habit > 0.99 > right  # near 1 for any pair: C1, C2 swamp the statistics
    ours = float(ssim(x, y, window="uniform", size=7)[0])
    assert ours == pytest.approx(right, abs=TOL)
    assert ours != pytest.approx(old_guess, abs=1e-3)
    assert float(psnr(x, y)[0]) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0))
    assert peak_signal_noise_ratio(a, b, data_range=255) - float(psnr(x, y)[0]) == (
        pytest.approx(20 * math.log10(255))
    )


def test_data_range_is_explicit_in_signatures() -> None:
    x, y = _pairs("noisy", (1, 28, 28), n=2)
    torch.testing.assert_close(ssim(x, y), ssim(x, y, data_range=1.0))
    torch.testing.assert_close(psnr(x, y), psnr(x, y, data_range=1.0))
    ref = _sk_ssim(
        x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2.0
    )
    np.testing.assert_allclose(ssim(x, y, data_range=2.0).numpy(), ref, atol=TOL, rtol=0)


# --------------------------------------------------------------------------- psnr, mse


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "smooth", "noisy"])
def test_psnr_and_mse_equal_skimage(kind: str, shape: tuple[int, int, int]) -> None:
    from skimage.metrics import mean_squared_error

    x, y = _pairs(kind, shape)
    ref_psnr = [
        peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0)
        for a, b in zip(x, y, strict=True)
    ]
    ref_mse = [mean_squared_error(a.numpy(), b.numpy()) for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(psnr(x, y).numpy(), ref_psnr, rtol=1e-12)
    np.testing.assert_allclose(mse(x, y).numpy(), ref_mse, rtol=1e-12)


def test_psnr_identical_is_inf_without_warning() -> None:
    x, y = _pairs("noisy", (3, 32, 32))
    y[1] = x[1]
    with np.errstate(all="raise"):
        out = psnr(x, y)
    assert math.isinf(out[1]) and out[1] > 0
    assert torch.isfinite(out[[0, 2]]).all()
    assert mse(x, y)[1] == 0


# --------------------------------------------------------------------------- identification


def test_identification_rate_exact_cases() -> None:
    g = torch.Generator().manual_seed(SEED)
    private = torch.rand(300, 3, 32, 32, generator=g)
    near = private + 1e-4 * torch.randn(private.shape, generator=g)
    assert identification_rate(near, private, chunk=64) == 1.0
    # a derangement: every reconstruction is some other private image exactly
    assert identification_rate(private.roll(1, dims=0), private, chunk=64) == 0.0
    # half right, half wrong
    mixed = near.clone()
    mixed[:150] = private[:150].roll(1, dims=0)
    assert identification_rate(mixed, private) == 0.5
    # a duplicate of the original in the gallery is a tie, hence a miss
    dup = torch.cat([private[:10], private[:1]])
    assert identification_rate(dup[:10], dup) == 0.9


def test_identification_rate_with_distractors_and_chunking() -> None:
    g = torch.Generator().manual_seed(SEED)
    private = torch.rand(120, 1, 28, 28, generator=g)
    recon = (private[:50] + 0.3 * torch.randn(50, 1, 28, 28, generator=g)).clamp(0, 1)
    # slow, obviously correct reference: every distance, one pair at a time
    hits = 0
    for i in range(50):
        d = [float(((recon[i].double() - p.double()) ** 2).sum()) for p in private]
        hits += all(d[i] < d[j] for j in range(120) if j != i)
    want = hits / 50
    for chunk in (1, 7, 50, 1000):
        assert identification_rate(recon, private, chunk=chunk) == want


def test_identification_rate_bad_inputs() -> None:
    x = torch.rand(4, 1, 8, 8)
    with pytest.raises(ValueError, match="only 3"):
        identification_rate(x, x[:3])
    with pytest.raises(ValueError, match="shape"):
        identification_rate(x, torch.rand(4, 1, 8, 9))


def test_every_metric_has_a_definition() -> None:
    for m in Metric:
        assert m.definition and "\n" not in m.definition
    assert not Metric.MSE.higher_is_better and Metric.SSIM.higher_is_better
