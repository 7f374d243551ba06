"""How good a reconstruction is: SSIM, PSNR, MSE and the identification rate.

Every function takes batches of images ``(N, C, H, W)`` with values in ``[0, 1]`` (a
``data_range`` of 1, fixed explicitly: see below) and returns one number per image, ``(N,)``
in float64, except :func:`identification_rate`, which is one fraction for the batch. Each
docstring states its exact definition; :class:`Metric` names them, each with a one-line
definition for reports.

Conventions (each matches :mod:`skimage.metrics` exactly, and the tests check it):

- **SSIM** (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) is computed per channel on the
  *valid* region (every window lies entirely inside the image: no padding enters the mean),
  then averaged over the channels. ``window="gaussian", size=11, sigma=1.5`` with population
  (co)variances is Wang et al.'s definition and equals ``structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
  channel_axis=0)``. ``window="uniform", size=7`` with *sample* (co)variances (``n / (n - 1)``
  correction) equals scikit-image's default, which He, Zhang & Lee (ACSAC 2019) report. The two
  are different numbers for the same pair of images: a report must say which one it prints.
- **data_range is 1, always stated**: scikit-image refuses float images without a
  ``data_range`` since 0.20 and guessed 2 before (the float dtype range ``[-1, 1]``), and code
  that passes 255 out of habit gets SSIMs near 1 for any pair; both are common sources of wrong
  numbers in published tables, hence the explicit default here.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "Metric",
    "identification_rate",
    "mse",
    "psnr",
    "ssim",
]

#: SSIM's stabilising constants, ``C1 = (K1 L)^2`` and ``C2 = (K2 L)^2`` (Wang et al., 2004)
_K1, _K2 = 0.01, 0.03


class Metric(StrEnum):
    """The reconstruction metrics, by the name a report prints; :attr:`definition` says what
    each number is."""

    SSIM = "ssim"
    SSIM_UNIFORM = "ssim-uniform7"
    PSNR = "psnr"
    MSE = "mse"
    IDENTIFICATION = "identification-rate"
    LPIPS = "lpips"

    @property
    def definition(self) -> str:
        """One line: the exact definition, for printing beside the number."""
        return _DEFINITIONS[self]

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value means a better reconstruction (a worse defence)."""
        return self not in (Metric.MSE, Metric.LPIPS)


_DEFINITIONS: dict[Metric, str] = {
    Metric.SSIM: (
        "SSIM (Wang et al. 2004): Gaussian 11x11 window, sigma 1.5, population (co)variances, "
        "K1=0.01, K2=0.03, data range 1, mean over the valid region and the channels"
    ),
    Metric.SSIM_UNIFORM: (
        "SSIM as He et al. 2019 (scikit-image default): uniform 7x7 window, sample "
        "(co)variances, K1=0.01, K2=0.03, data range 1, mean over the valid region and channels"
    ),
    Metric.PSNR: "PSNR = 10 log10(1 / MSE) in dB, per image, data range 1 (inf when identical)",
    Metric.MSE: "MSE = mean over channels and pixels of (x - y)^2, per image, values in [0, 1]",
    Metric.IDENTIFICATION: (
        "identification rate: fraction of reconstructions whose nearest private image "
        "(pixel L2; a tie counts as a miss) is their own original"
    ),
    Metric.LPIPS: (
        "LPIPS (Zhang et al. 2018) from the user's backbone and linear-layer weights: "
        "sum over five layers of the spatial mean of the weighted squared difference of "
        "channel-normalised activations; 0 for identical images, lower is closer"
    ),
}


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"images of different shapes: {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim != 4:
        raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")


def _window_1d(window: str, size: int, sigma: float) -> torch.Tensor:
    """The normalised 1-D window (the 2-D one is its outer product with itself)."""
    if window == "uniform":
        return torch.full((size,), 1.0 / size, dtype=torch.float64)
    if window == "gaussian":
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        w = torch.exp(-0.5 * (t / sigma) ** 2)
        return w / w.sum()
    raise ValueError(f"unknown window {window!r}; allowed: 'gaussian', 'uniform'")


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window: Literal["gaussian", "uniform"] = "gaussian",
    size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Structural similarity of each pair of images, ``(N,)``.

    For each channel, with a normalised window ``w`` of ``size x size`` taps, local weighted
    means ``mu_x = w * x``, variances ``s_x^2 = c (w * x^2 - mu_x^2)`` and covariance
    ``s_xy = c (w * xy - mu_x mu_y)``::

        SSIM(p) = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))

    with ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = data_range``, averaged over the *valid*
    positions ``p`` (windows entirely inside the image: ``(H - size + 1) x (W - size + 1)``),
    then over the channels.

    Parameters
    ----------
    x, y
        Images ``(N, C, H, W)``; ``H, W >= size``.
    window
        ``"gaussian"``: ``w(t) ~ exp(-t^2 / (2 sigma^2))`` on ``size`` taps centred on 0, and
        population (co)variances (``c = 1``): Wang et al. (2004) with the defaults, equal to
        ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1)``. ``"uniform"``: a box of ``size`` taps and
        sample (co)variances (``c = n / (n - 1)``, ``n = size^2``): with ``size=7``,
        scikit-image's default, as He, Zhang & Lee (2019) report.
    size
        Window side, odd.
    sigma
        Standard deviation of the Gaussian window in pixels (ignored for ``"uniform"``).
    data_range
        ``L``: the span of possible values (1 for images in ``[0, 1]``).
    dtype
        The arithmetic's precision: float64 for reported numbers; a training loss passes
        float32 (differentiable either way).

    Returns
    -------
    torch.Tensor
        ``(N,)`` in ``dtype``, in ``[-1, 1]``; 1 for identical images.
    """
    _check_pair(x, y)
    if size < 1 or size % 2 != 1:
        raise ValueError(f"size must be a positive odd number, got {size}")
    n, c, h, w = x.shape
    if h < size or w < size:
        raise ValueError(f"images of {h}x{w} are smaller than the {size}x{size} window")
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    k = _window_1d(window, size, sigma).to(device=x.device, dtype=dtype)
    cov_norm = size * size / (size * size - 1) if window == "uniform" and size > 1 else 1.0

    a = x.to(dtype).reshape(n * c, 1, h, w)
    b = y.to(dtype).reshape(n * c, 1, h, w)
    # five filtered maps at once: means, second moments, cross moment; separable, 'valid'
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=0)
    f = F.conv2d(stack, k.view(1, 1, size, 1))
    f = F.conv2d(f, k.view(1, 1, 1, size))
    ux, uy, uxx, uyy, uxy = f.chunk(5, dim=0)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.reshape(n, c, -1).mean(dim=2).mean(dim=1)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each pair of images, ``(N,)``.

    ``MSE = mean over (c, h, w) of (x - y)^2``, computed in float64.
    """
    _check_pair(x, y)
    d = x.to(torch.float64) - y.to(torch.float64)
    return (d * d).flatten(1).mean(dim=1)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each pair of images in dB, ``(N,)``.

    ``PSNR = 10 log10(L^2 / MSE)`` with ``L = data_range`` and :func:`mse`; ``inf`` where the
    images are identical (``MSE = 0``), set explicitly rather than left to a division by 0.
    Symmetric in ``x`` and ``y``; equals ``skimage.metrics.peak_signal_noise_ratio(x, y,
    data_range=L)`` image by image.
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    e = mse(x, y)
    out = torch.full_like(e, math.inf)
    pos = e > 0
    out[pos] = 10.0 * torch.log10(data_range**2 / e[pos])
    return out


def identification_rate(recon: torch.Tensor, private: torch.Tensor, *, chunk: int = 256) -> float:
    """Fraction of reconstructions whose nearest private image is their own original.

    Reconstruction ``i`` is identified when its pixel L2 distance to ``private[i]`` is
    strictly smaller than to every other ``private[j]`` (a tie, e.g. with a duplicate of the
    original, counts as a miss). ``private`` may hold more images than ``recon``
    (distractors after the originals): ``private[i]`` is the original of ``recon[i]`` for
    ``i < len(recon)``.

    Squared distances are computed in float64 as ``||r||^2 - 2 r.p + ||p||^2``, ``chunk``
    reconstructions at a time against all of ``private``, so memory stays at
    ``chunk x len(private)`` distances plus one float64 copy of the images (1,000 x 1,000
    images of 3x32x32: about 50 MB).

    Returns
    -------
    float
        In ``[0, 1]``; 1/len(private) is chance for a guess among the originals.
    """
    n, m = recon.shape[0], private.shape[0]
    if recon.shape[1:] != private.shape[1:]:
        raise ValueError(
            f"reconstructions {tuple(recon.shape[1:])} and private images "
            f"{tuple(private.shape[1:])} differ in shape"
        )
    if m < n:
        raise ValueError(f"{n} reconstructions but only {m} private images")
    if n == 0:
        raise ValueError("no reconstructions")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    p = private.to(torch.float64).flatten(1)
    p_sq = (p * p).sum(dim=1)
    hits = 0
    for start in range(0, n, chunk):
        r = recon[start : start + chunk].to(torch.float64).flatten(1)
        idx = torch.arange(start, start + r.shape[0], device=r.device)
        # ||r - p||^2 up to the row constant ||r||^2, which does not change the ranking; the
        # own distance is computed directly so that a near-exact match is not lost to
        # cancellation in the expansion
        d = p_sq[None, :] - 2.0 * (r @ p.T) + (r * r).sum(dim=1, keepdim=True)
        rows = torch.arange(r.shape[0], device=r.device)
        own = d[rows, idx].clone()
        d[rows, idx] = math.inf
        hits += int((own < d.min(dim=1).values).sum())
    return hits / n
