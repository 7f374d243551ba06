"""Tests for :mod:`phloem.attacks.methods` and the threat model they work under.

The reference cases are splits whose inverse is known: the identity and an invertible linear
map must be recovered almost exactly by the white-box attack; the learned inverters must beat
the mean-image baseline on a downsampling split; the nearest neighbour must return a private
image that the attacker queried.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from phloem.attacks.methods.baselines import MeanImage, NearestNeighbour
from phloem.attacks.methods.encoder_decoder import EncoderDecoder, EncoderDecoderParams
from phloem.attacks.methods.inverse_net import InverseNet, InverseNetParams
from phloem.attacks.methods.learned import (
    LearnedParams,
    Loss,
    Schedule,
    reconstruction_loss,
    upsample_stages,
)
from phloem.attacks.methods.optimise import total_variation
from phloem.attacks.methods.rmle import RMLE, RMLEParams
from phloem.attacks.registries import ATTACKS
from phloem.attacks.threat import Access, AuxData, BudgetExhaustedError, EdgeOracle, ThreatModel
from phloem.core.errors import ConfigError, PhloemError


def smooth_images(n: int, c: int, side: int, seed: int) -> torch.Tensor:
    """Images in [0, 1] made of a few low-frequency waves (natural-image-like smoothness)."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.linspace(0, 1, side)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    out = torch.zeros(n, c, side, side)
    for _ in range(3):
        fx, fy, phase = (
            torch.rand(3, n, c, 1, 1, generator=gen)
            * torch.tensor([3.0, 3.0, 6.3])[:, None, None, None, None]
        )
        out += torch.sin(fx * 6.3 * xx + fy * 6.3 * yy + phase)
    return (out - out.amin(dim=(2, 3), keepdim=True)) / (
        out.amax(dim=(2, 3), keepdim=True) - out.amin(dim=(2, 3), keepdim=True) + 1e-6
    )


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean())


def oracle(edge: nn.Module, shape: tuple[int, int, int], **threat: object) -> EdgeOracle:
    return EdgeOracle(edge.eval(), ThreatModel(**threat), shape)  # type: ignore[arg-type]


def test_the_registry_lists_every_attack() -> None:
    names = set(ATTACKS.names())
    assert {"mean-image", "nearest-neighbour", "rmle", "inverse-net", "encoder-decoder"} <= names


def test_the_threat_model_validates_and_the_oracle_enforces_it() -> None:
    with pytest.raises(ConfigError, match="access"):
        ThreatModel(access="grey-box")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="query_budget"):
        ThreatModel(query_budget=-1)
    with pytest.raises(ConfigError, match="query-free attacker makes no queries"):
        ThreatModel(access=Access.QUERY_FREE, query_budget=10)
    assert ThreatModel(aux="noise").aux is AuxData.NOISE  # type: ignore[arg-type]
    o = oracle(nn.Identity(), (1, 4, 4), query_budget=5)
    o.query(torch.zeros(3, 1, 4, 4))
    with pytest.raises(BudgetExhaustedError, match="3 queries made, 3 more asked, budget 5"):
        o.query(torch.zeros(3, 1, 4, 4))
    with pytest.raises(PhloemError, match="no access to the edge part's weights"):
        o.white_box()


@pytest.mark.parametrize("kind", ["identity", "linear"])
def test_rmle_recovers_the_input_of_an_invertible_split(kind: str) -> None:
    torch.manual_seed(0)  # the layer's init only; the attack's randomness is injected
    edge: nn.Module = nn.Identity()
    if kind == "linear":
        edge = nn.Conv2d(3, 6, 1, bias=True)  # injective: 3 -> 6 channels, random full rank
    x = smooth_images(4, 3, 8, seed=1)
    o = oracle(edge, (3, 8, 8), access=Access.WHITE_BOX)
    attack = RMLE(RMLEParams(steps=600, lr=0.1, tv_weight=0.0))
    attack.fit(o, x, torch.Generator().manual_seed(2))
    with torch.no_grad():
        irs = edge(x)
    recon = attack.reconstruct(irs)
    assert recon.shape == x.shape and float(recon.min()) >= 0 and float(recon.max()) <= 1
    assert mse(recon, x) < 1e-4, mse(recon, x)


def test_rmle_refuses_a_black_box_attacker() -> None:
    o = oracle(nn.Identity(), (1, 4, 4))
    with pytest.raises(PhloemError, match="black-box attacker has no access"):
        RMLE().fit(o, torch.zeros(1, 1, 4, 4), torch.Generator())


def test_total_variation_is_zero_on_flat_images_and_positive_on_edges() -> None:
    flat = torch.full((2, 1, 5, 5), 0.3)
    assert torch.allclose(total_variation(flat), torch.zeros(2))
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0
    assert float(total_variation(step)[0]) == pytest.approx(1 / 3)  # 4 of 12 horizontal pairs


def test_the_baselines() -> None:
    aux = smooth_images(20, 1, 8, seed=3)
    o = oracle(nn.AvgPool2d(2), (1, 8, 8))
    mean = MeanImage()
    mean.fit(o, aux, torch.Generator())
    assert torch.allclose(mean.reconstruct(torch.zeros(3, 1, 4, 4)), aux.mean(0).expand(3, 1, 8, 8))
    nn_attack = NearestNeighbour()
    nn_attack.fit(o, aux, torch.Generator())
    private = aux[[4, 11, 17]]  # queried images: found again exactly
    with torch.no_grad():
        assert torch.equal(nn_attack.reconstruct(nn.AvgPool2d(2)(private)), private)


def test_a_query_set_respects_the_budget_and_a_query_free_attacker_gets_a_clear_error() -> None:
    aux = smooth_images(30, 1, 8, seed=4)
    o = oracle(nn.AvgPool2d(2), (1, 8, 8), query_budget=12)
    attack = NearestNeighbour()
    attack.fit(o, aux, torch.Generator())
    assert o.queries == 12 and attack._images.shape[0] == 12
    free = oracle(nn.AvgPool2d(2), (1, 8, 8), access=Access.QUERY_FREE)
    with pytest.raises(ConfigError, match=r"threat\.query_budget"):
        NearestNeighbour().fit(free, aux, torch.Generator())


@pytest.mark.parametrize(
    "attack",
    [
        InverseNet(InverseNetParams(epochs=30, batch_size=32, lr=3e-3, width=16)),
        EncoderDecoder(EncoderDecoderParams(epochs=30, batch_size=32, lr=3e-3, width=16, blocks=1)),
    ],
    ids=["inverse-net", "encoder-decoder"],
)
def test_learned_inverters_beat_the_mean_image_on_a_downsampling_split(attack: object) -> None:
    edge = nn.AvgPool2d(2)  # 16x16 -> 8x8: information lost, but much structure left
    aux = smooth_images(256, 1, 16, seed=5)
    private = smooth_images(64, 1, 16, seed=6)
    o = oracle(edge, (1, 16, 16))
    gen = torch.Generator().manual_seed(7)
    attack.fit(o, aux, gen)  # type: ignore[attr-defined]
    with torch.no_grad():
        recon = attack.reconstruct(edge(private))  # type: ignore[attr-defined]
    mean = MeanImage()
    mean.fit(o, aux, gen)
    base = mse(mean.reconstruct(edge(private)), private)
    assert recon.shape == private.shape
    assert mse(recon, private) < 0.5 * base, (mse(recon, private), base)


def test_learned_inverters_handle_a_flat_ir_and_odd_sizes() -> None:
    """An IR after a fully connected layer, and a 28x28 input (MNIST-like)."""
    torch.manual_seed(0)
    edge = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 32))
    aux = smooth_images(16, 1, 28, seed=8)
    for attack in (
        InverseNet(InverseNetParams(epochs=1, width=8)),
        EncoderDecoder(EncoderDecoderParams(epochs=1, width=8, blocks=1)),
    ):
        attack.fit(oracle(edge, (1, 28, 28)), aux, torch.Generator().manual_seed(1))
        with torch.no_grad():
            out = attack.reconstruct(edge(aux[:3]))
        assert out.shape == (3, 1, 28, 28)


def test_learned_training_is_reproducible_from_the_generator() -> None:
    edge = nn.AvgPool2d(2)
    aux = smooth_images(32, 1, 8, seed=9)
    outs = []
    for _ in range(2):
        attack = InverseNet(InverseNetParams(epochs=2, width=8))
        attack.fit(oracle(edge, (1, 8, 8)), aux, torch.Generator().manual_seed(3))
        with torch.no_grad():
            outs.append(attack.reconstruct(edge(aux[:4])))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", True),
        ("lr", float("nan")),
        ("weight_decay", -1.0),
        ("loss", "huber"),
        ("schedule", "linear"),
    ],
)
def test_learned_params_name_the_bad_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        LearnedParams(**{field: value})  # type: ignore[arg-type]
    assert err.value.field == field


def test_reconstruction_losses_against_their_definitions() -> None:
    """Each loss equals its formula built from the reference pieces (torch's pixel losses, the
    float64 SSIM the reports print), is 0 on identical images and carries a gradient."""
    import torch.nn.functional as F

    from phloem.attacks import metrics

    x = smooth_images(4, 3, 16, seed=1)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    dissim = 1 - float(metrics.ssim(y, x).mean())
    l1 = float(F.l1_loss(y, x))
    expected = {
        Loss.MSE: float(F.mse_loss(y, x)),
        Loss.L1: l1,
        Loss.SSIM: dissim,
        Loss.SSIM_L1: 0.84 * dissim + 0.16 * l1,
    }
    for loss, want in expected.items():
        assert float(reconstruction_loss(loss, y, x)) == pytest.approx(want, rel=1e-4), loss
        assert float(reconstruction_loss(loss, x, x)) == pytest.approx(0.0, abs=1e-6), loss
        z = y.clone().requires_grad_(True)
        reconstruction_loss(loss, z, x).backward()
        assert z.grad is not None and float(z.grad.abs().sum()) > 0, loss


@pytest.mark.parametrize("loss", list(Loss))
def test_every_loss_with_the_cosine_schedule_trains_an_inverter(loss: Loss) -> None:
    """A 2x downsampling split (16x16 -> 8x8): every loss, with the cosine schedule, trains
    an inverter whose SSIM is far above the mean image's (measured: 0.98-0.99 vs 0.03)."""
    from phloem.attacks import metrics

    edge = nn.AvgPool2d(2)
    aux = smooth_images(256, 1, 16, seed=5)
    private = smooth_images(64, 1, 16, seed=6)
    o = oracle(edge, (1, 16, 16))
    recipe = {"epochs": 30, "batch_size": 32, "lr": 3e-3, "width": 16}
    attack = InverseNet(InverseNetParams(**recipe, loss=loss, schedule=Schedule.COSINE))  # type: ignore[arg-type]
    attack.fit(o, aux, torch.Generator().manual_seed(7))
    with torch.no_grad():
        recon = attack.reconstruct(edge(private))
    mean = aux.mean(dim=0, keepdim=True).expand_as(private)
    got, base = (float(metrics.ssim(r, private).mean()) for r in (recon, mean))
    assert got > 0.8 and base < 0.1, (got, base)


def test_upsample_stages() -> None:
    assert [upsample_stages(s, 32) for s in (32, 16, 8, 4, 3, 1)] == [0, 1, 2, 3, 4, 5]
    assert upsample_stages(7, 28) == 2 and upsample_stages(4, 28) == 3


def test_unsplit_needs_no_query_and_recovers_a_parameter_free_split() -> None:
    """UnSplit (Erdogan et al.): query-free; with an identity edge part (nothing to learn
    about its weights) the joint optimisation is rMLE and recovers the input."""
    from phloem.attacks.methods.unsplit import UnSplit, UnSplitParams

    x = smooth_images(4, 1, 8, seed=11)
    o = EdgeOracle(
        nn.Identity(),
        ThreatModel(access=Access.QUERY_FREE),
        (1, 8, 8),
        architecture=lambda gen: nn.Identity(),
    )
    attack = UnSplit(UnSplitParams(steps=600, lr=0.1, tv_weight=0.0))
    attack.fit(o, x[:0], torch.Generator().manual_seed(0))
    recon = attack.reconstruct(x)
    assert o.queries == 0 and mse(recon, x) < 1e-4


def test_unsplit_refuses_an_attacker_that_does_not_know_the_architecture() -> None:
    from phloem.attacks.methods.unsplit import UnSplit

    blind = EdgeOracle(
        nn.Identity(),
        ThreatModel(access=Access.QUERY_FREE, knows_architecture=False),
        (1, 4, 4),
        architecture=lambda gen: nn.Identity(),
    )
    with pytest.raises(PhloemError, match="does not know the edge part's architecture"):
        UnSplit().fit(blind, torch.zeros(0, 1, 4, 4), torch.Generator())
    shadow_learns = EdgeOracle(
        nn.Conv2d(1, 2, 3, padding=1),
        ThreatModel(access=Access.QUERY_FREE),
        (1, 8, 8),
        architecture=lambda gen: nn.Conv2d(1, 2, 3, padding=1),
    )
    from phloem.attacks.methods.unsplit import UnSplitParams

    attack = UnSplit(UnSplitParams(steps=3))
    attack.fit(shadow_learns, torch.zeros(0, 1, 8, 8), torch.Generator().manual_seed(1))
    out = attack.reconstruct(torch.rand(2, 2, 8, 8))
    assert out.shape == (2, 1, 8, 8) and float(out.min()) >= 0 and float(out.max()) <= 1


def cloud_oracle(edge: nn.Module, cloud: nn.Module, **threat: object) -> EdgeOracle:
    return EdgeOracle(
        edge,
        ThreatModel(**threat),  # type: ignore[arg-type]
        (1, 8, 8),
        architecture=lambda gen: nn.Conv2d(1, 2, 3, padding=1),
        cloud=lambda: cloud,
    )


def test_the_shadow_model_attack_needs_the_cloud_part_and_labels_in_its_range() -> None:
    """He et al.'s query-free attacker is the cloud party: without the cloud part, without
    labels, or with labels the cloud part cannot output, it is refused and told why."""
    from phloem.attacks.methods.shadow import ShadowModel

    edge = nn.Conv2d(1, 2, 3, padding=1)
    cloud = nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
    x, gen = smooth_images(6, 1, 8, seed=2), torch.Generator().manual_seed(0)
    with pytest.raises(PhloemError, match=r"threat\.knows_cloud"):
        ShadowModel().fit(cloud_oracle(edge, cloud, access=Access.QUERY_FREE), x, gen, labels=None)
    holder = cloud_oracle(edge, cloud, access=Access.QUERY_FREE, knows_cloud=True)
    with pytest.raises(ConfigError, match=r"aux\.name.*no labels"):
        ShadowModel().fit(holder, x, gen, labels=None)
    with pytest.raises(ConfigError, match=r"0\.\.2"):
        ShadowModel().fit(holder, x, gen, labels=torch.tensor([0, 1, 2, 3, 0, 1]))
    with pytest.raises(ConfigError, match=r"threat\.access"):
        from phloem.attacks.evaluate import run_attack
        from phloem.attacks.victims.lenet import LeNet

        run_attack(
            LeNet(),
            "conv1",
            ShadowModel(),
            ThreatModel(access=Access.WHITE_BOX),
            torch.zeros(1, 1, 28, 28),
            torch.zeros(1, 1, 28, 28),
            gen=gen,
        )


def test_the_shadow_model_attack_makes_no_query_and_leaves_the_cloud_part_alone() -> None:
    from phloem.attacks.methods.shadow import ShadowModel, ShadowParams

    edge = nn.Conv2d(1, 2, 3, padding=1)
    cloud = nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 3))
    before = [w.clone() for w in cloud.parameters()]
    o = cloud_oracle(edge, cloud, access=Access.QUERY_FREE, knows_cloud=True)
    x = smooth_images(32, 1, 8, seed=3)
    labels = (x[:, 0, :4].mean(dim=(1, 2)) * 3).long().clamp(max=2)
    attack = ShadowModel(ShadowParams(epochs=3, steps=5, batch=16))
    attack.fit(o, x, torch.Generator().manual_seed(0), labels=labels)
    out = attack.reconstruct(edge(x[:20]).detach())
    assert out.shape == (20, 1, 8, 8) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert o.queries == 0 and 0.0 <= attack.train_accuracy <= 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, cloud.parameters(), strict=True))


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", 0), ("lr", float("nan")), ("invert_lr", 0.0), ("tv_weight", -1.0), ("batch", 1.5)],
)
def test_shadow_params_name_the_bad_field(field: str, value: object) -> None:
    from phloem.attacks.methods.shadow import ShadowParams

    with pytest.raises(ConfigError, match=field):
        ShadowParams(**{field: value})  # type: ignore[arg-type]


def test_mmd_against_a_pairwise_reference() -> None:
    """The multi-kernel MMD^2 equals its double-sum definition, is 0 for one sample against
    itself and grows with a shift."""
    from phloem.attacks.methods.fora import mmd2

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 3, generator=g), torch.randn(5, 3, generator=g) + 0.5
    pooled = torch.cat([a, b])
    d2 = [[float(((u - v) ** 2).sum()) for v in pooled] for u in pooled]
    m = float(torch.tensor([x for row in d2 for x in row if x > 0]).median())

    def k(i: int, j: int) -> float:
        return sum(math.exp(-d2[i][j] / (s * m)) for s in (0.25, 0.5, 1, 2, 4)) / 5

    n = len(a)
    aa = sum(k(i, j) for i in range(n) for j in range(n)) / n**2
    bb = sum(k(i, j) for i in range(n, 12) for j in range(n, 12)) / 25
    ab = sum(k(i, j) for i in range(n) for j in range(n, 12)) / (n * 5)
    assert float(mmd2(a, b)) == pytest.approx(aa + bb - 2 * ab, rel=1e-5)
    assert float(mmd2(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(mmd2(a, a + 3.0)) > float(mmd2(a, a + 0.3)) > 0


def test_fora_is_query_free_needs_the_architecture_and_inverts_a_parameter_free_split() -> None:
    """FORA never queries the edge part; with a parameter-free edge (nothing to learn) its
    substitute is exact and the inverse network trained on public images beats the mean."""
    from phloem.attacks.methods.fora import Fora, ForaParams

    edge = nn.AvgPool2d(2)
    public = smooth_images(256, 1, 16, seed=5)
    private = smooth_images(64, 1, 16, seed=6)
    o = EdgeOracle(
        edge,
        ThreatModel(access=Access.QUERY_FREE),
        (1, 16, 16),
        architecture=lambda gen: nn.AvgPool2d(2),
    )
    params = ForaParams(epochs=30, batch_size=32, lr=3e-3, width=16, substitute_steps=2)
    attack = Fora(params)
    attack.fit(o, public, torch.Generator().manual_seed(7))
    recon = attack.reconstruct(edge(private))
    base = mse(public.mean(dim=0, keepdim=True).expand_as(private), private)
    assert o.queries == 0 and mse(recon, private) < 0.5 * base
    blind = EdgeOracle(edge, ThreatModel(access=Access.QUERY_FREE), (1, 16, 16))
    with pytest.raises(PhloemError, match="architecture"):
        Fora(params).fit(blind, public, torch.Generator())


def test_fora_substitute_moves_towards_the_observed_irs() -> None:
    """A conv + ReLU edge part with weights the attacker does not have: training the
    substitute on public images lowers its MMD to the observed IRs several-fold, and the
    victim's edge part is left untouched."""
    from phloem.attacks.methods.fora import Fora, ForaParams, mmd2

    def arch(gen: torch.Generator) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
            return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU())

    torch.manual_seed(3)
    edge = arch(torch.Generator().manual_seed(99)).eval()
    with torch.no_grad():
        edge[0].weight.mul_(3.0)
        edge[0].bias.fill_(0.2)
    before = {k: v.clone() for k, v in edge.state_dict().items()}
    public = smooth_images(256, 1, 16, seed=8)
    private = smooth_images(128, 1, 16, seed=9)
    o = EdgeOracle(edge, ThreatModel(access=Access.QUERY_FREE), (1, 16, 16), architecture=arch)
    attack = Fora(ForaParams(substitute_steps=300, substitute_lr=1e-2, mmd_batch=64))
    attack.fit(o, public, torch.Generator().manual_seed(1))
    with torch.no_grad():
        observed = edge(private)
    sub = attack.substitute(observed)
    assert attack.mmd_after < 0.3 * attack.mmd_before, (attack.mmd_before, attack.mmd_after)
    with torch.no_grad():
        assert float(mmd2(sub(public[:64]).flatten(1), observed[:64].flatten(1))) < 0.3 * (
            attack.mmd_before
        )
    assert all(torch.equal(before[k], edge.state_dict()[k]) for k in before) and o.queries == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("substitute_steps", 0), ("substitute_lr", float("nan")), ("mmd_batch", 1), ("epochs", -1)],
)
def test_fora_params_name_the_bad_field(field: str, value: object) -> None:
    from phloem.attacks.methods.fora import ForaParams

    with pytest.raises(ConfigError) as err:
        ForaParams(**{field: value})  # type: ignore[arg-type]
    assert err.value.field == field
