"""Tests for :mod:`phloem.attacks.lpips`: the arithmetic against a plain functional reference
written from the paper, and every way a user's weight files can be wrong.

The weights here are random tensors saved in torchvision's / the lpips package's layout: they
check the arithmetic and the loading, not perceptual quality (which needs the real weights a
user supplies; the library never substitutes random ones).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from attack_configs import SMALL

from phloem.attacks import experiment
from phloem.attacks.experiment import MetricsConfig, load_config, run_experiment
from phloem.attacks.lpips import LPIPS, LPIPS_NETS
from phloem.core.errors import ConfigError, DataNotFoundError

#: AlexNet's features in torchvision's layout: index -> (out, in, kernel)
ALEX_CONVS = {
    0: (64, 3, 11),
    3: (192, 64, 5),
    6: (384, 192, 3),
    8: (256, 384, 3),
    10: (256, 256, 3),
}
ALEX_CHANNELS = (64, 192, 384, 256, 256)


def alex_weights(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    backbone: dict[str, torch.Tensor] = {}
    for i, (o, c, k) in ALEX_CONVS.items():
        backbone[f"features.{i}.weight"] = torch.randn(o, c, k, k, generator=g) / (c * k * k) ** 0.5
        backbone[f"features.{i}.bias"] = 0.1 * torch.randn(o, generator=g)
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision's extra keys: ignored
    linear = {
        f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
        for i, c in enumerate(ALEX_CHANNELS)
    }
    return backbone, linear


def reference(
    backbone: dict[str, torch.Tensor],
    linear: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """LPIPS (alex) written out from Zhang et al. 2018, one image and one layer at a time."""

    def feats(img: torch.Tensor) -> list[torch.Tensor]:
        shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        h = (img * 2 - 1 - shift) / scale

        def conv(t: torch.Tensor, i: int, stride: int, pad: int) -> torch.Tensor:
            w, b = backbone[f"features.{i}.weight"], backbone[f"features.{i}.bias"]
            return F.relu(F.conv2d(t, w, b, stride=stride, padding=pad))

        r1 = conv(h, 0, 4, 2)
        r2 = conv(F.max_pool2d(r1, 3, 2), 3, 1, 2)
        r3 = conv(F.max_pool2d(r2, 3, 2), 6, 1, 1)
        r4 = conv(r3, 8, 1, 1)
        r5 = conv(r4, 10, 1, 1)
        return [r1, r2, r3, r4, r5]

    out = []
    for n in range(x.shape[0]):
        total = 0.0
        for layer, (fa, fb) in enumerate(
            zip(feats(x[n : n + 1]), feats(y[n : n + 1]), strict=True)
        ):
            w = linear[f"lin{layer}.model.1.weight"].flatten()
            hh, ww = fa.shape[-2:]
            acc = 0.0
            for i in range(hh):
                for j in range(ww):
                    a, b = fa[0, :, i, j], fb[0, :, i, j]
                    a = a / (a.norm() + 1e-10)
                    b = b / (b.norm() + 1e-10)
                    acc += float((w * (a - b) ** 2).sum())
            total += acc / (hh * ww)
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def images(n: int, side: int, seed: int, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(seed))


def save(tmp_path: Path, backbone: object, linear: object) -> tuple[Path, Path]:
    b, lin = tmp_path / "alexnet.pth", tmp_path / "alex_lin.pth"
    torch.save(backbone, b)
    torch.save(linear, lin)
    return b, lin


def test_lpips_equals_the_reference(tmp_path: Path) -> None:
    backbone, linear = alex_weights()
    metric = LPIPS.from_files("alex", *save(tmp_path, backbone, linear))
    x, y = images(3, 32, 1), images(3, 32, 2)
    ours = metric.distances(x, y)
    torch.testing.assert_close(ours, reference(backbone, linear, x, y), rtol=1e-4, atol=1e-6)
    assert ours.dtype == torch.float64 and (ours > 0).all()


def test_lpips_is_zero_on_identical_images_symmetric_and_grey_means_repeated() -> None:
    metric = LPIPS("alex", *alex_weights())
    x, y = images(2, 40, 3), images(2, 40, 4)
    assert torch.allclose(metric.distances(x, x), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(metric.distances(x, y), metric.distances(y, x))
    grey_x, grey_y = images(2, 32, 5, channels=1), images(2, 32, 6, channels=1)
    torch.testing.assert_close(
        metric.distances(grey_x, grey_y),
        metric.distances(grey_x.expand(-1, 3, -1, -1), grey_y.expand(-1, 3, -1, -1)),
    )
    # batching does not change a number
    torch.testing.assert_close(metric.distances(x, y, batch=1), metric.distances(x, y))


def test_vgg_layout_loads_and_taps_five_layers() -> None:
    convs = [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256)]
    convs += [(512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    index = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    backbone = {}
    for i, (o, c) in zip(index, convs, strict=True):
        backbone[f"features.{i}.weight"] = torch.randn(o, c, 3, 3) * 0.05
        backbone[f"features.{i}.bias"] = torch.zeros(o)
    linear = {
        f"lin{i}.model.1.weight": torch.ones(1, c, 1, 1)
        for i, c in enumerate((64, 128, 256, 512, 512))
    }
    metric = LPIPS("vgg", backbone, linear)
    x = images(1, 16, 0)
    assert [tuple(a.shape[1:]) for a in metric.activations(x)] == [
        (64, 16, 16),
        (128, 8, 8),
        (256, 4, 4),
        (512, 2, 2),
        (512, 1, 1),
    ]


def test_a_missing_file_says_where_it_looked_and_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="lpips_backbone") as err:
        LPIPS.from_files("alex", tmp_path / "nope.pth", tmp_path / "lin.pth")
    assert str(tmp_path / "nope.pth") in str(err.value)


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        ("drop-conv", "metrics.lpips_backbone"),
        ("bad-shape", "metrics.lpips_backbone"),
        ("drop-linear", "metrics.lpips_linear"),
        ("linear-shape", "metrics.lpips_linear"),
        ("not-a-dict", "metrics.lpips_backbone"),
        ("garbage", "metrics.lpips_backbone"),
        ("nan-backbone", "metrics.lpips_backbone"),
        ("negative-linear", "metrics.lpips_linear"),
        ("inf-linear", "metrics.lpips_linear"),
    ],
)
def test_wrong_weight_files_name_the_field(tmp_path: Path, damage: str, field: str) -> None:
    backbone: object
    backbone, linear = alex_weights()
    if damage == "drop-conv":
        del backbone["features.6.weight"]
    elif damage == "bad-shape":
        backbone["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    elif damage == "drop-linear":
        del linear["lin4.model.1.weight"]
    elif damage == "linear-shape":
        linear["lin0.model.1.weight"] = torch.zeros(1, 32, 1, 1)
    elif damage == "nan-backbone":  # a forged file: every distance would be NaN
        backbone["features.3.weight"][0, 0, 0, 0] = float("nan")
    elif damage == "negative-linear":  # a forged file: distances could go negative
        linear["lin2.model.1.weight"][0, 5] = -1.0
    elif damage == "inf-linear":
        linear["lin1.model.1.weight"][0, 0] = float("inf")
    elif damage == "not-a-dict":
        backbone = [torch.zeros(1)]
    b, lin = save(tmp_path, backbone, linear)
    if damage == "garbage":
        b.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError) as err:
        LPIPS.from_files("alex", b, lin)
    assert err.value.field == field


def test_images_too_small_for_the_backbone_are_refused() -> None:
    metric = LPIPS("alex", *alex_weights())
    with pytest.raises(ValueError, match="at least 31"):
        metric.distances(images(1, 28, 0), images(1, 28, 1))


def test_metrics_config_needs_both_files_and_a_known_net() -> None:
    assert experiment.LPIPS_NETS == LPIPS_NETS  # the torch-free copy the config reads
    with pytest.raises(ConfigError) as err:
        MetricsConfig(lpips_backbone="a.pth")
    assert err.value.field == "metrics.lpips_linear"
    with pytest.raises(ConfigError) as err:
        MetricsConfig(lpips_net="squeeze")
    assert err.value.field == "metrics.lpips_net"
    assert not MetricsConfig().lpips


def test_an_experiment_reports_lpips_only_when_given_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LeNet takes 28x28 digits: AlexNet's LPIPS is refused before any seed runs, naming the
    backbone that fits; without weight files there is no LPIPS column at all."""
    monkeypatch.setenv("PHLOEM_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "c.toml"
    config.write_text(SMALL + f'out_dir = "{tmp_path / "runs"}"\n')
    b, lin = save(tmp_path, *alex_weights())
    sets = [f"metrics.lpips_backbone={b}", f"metrics.lpips_linear={lin}"]
    with pytest.raises(ConfigError) as err:
        run_experiment(load_config(config, sets))
    assert err.value.field == "metrics.lpips_net" and list(err.value.allowed or []) == ["vgg"]
    plain = run_experiment(load_config(config))
    assert "lpips" not in plain.summary and "lpips" not in plain.rows[0]


def test_an_experiment_on_32px_images_adds_an_lpips_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A victim on 32x32 inputs with the user's AlexNet weights: every seed gets an LPIPS
    value, the summary its interval, and the report its definition."""
    from phloem.nets import training

    monkeypatch.setenv("PHLOEM_CACHE_DIR", str(tmp_path / "cache"))
    digits = training.load_images("digits")
    # digits upscaled to 32x32 and repeated to three channels: a CIFAR-shaped victim's input
    up = F.interpolate(digits.x_train[:200], size=32, mode="bilinear").expand(-1, 3, -1, -1)
    up_test = F.interpolate(digits.x_test[:100], size=32, mode="bilinear").expand(-1, 3, -1, -1)
    small = training.ImageData(
        "digits", up.contiguous(), digits.y_train[:200], up_test.contiguous(), digits.y_test[:100]
    )
    monkeypatch.setattr(training, "load_images", lambda name: small)
    config = tmp_path / "c.toml"
    text = SMALL.replace('name = "lenet"\nsplit = "pool1"', 'name = "he6conv"\nsplit = "ReLU12"')
    config.write_text(text + f'out_dir = "{tmp_path / "runs"}"\n')
    b, lin = save(tmp_path, *alex_weights())
    cfg = load_config(config, [f"metrics.lpips_backbone={b}", f"metrics.lpips_linear={lin}"])
    result = run_experiment(cfg)
    assert all(r["lpips"] > 0 for r in result.rows)
    assert "lpips" in result.summary
    assert "Zhang et al. 2018" in (result.run_dir / "report.md").read_text()
