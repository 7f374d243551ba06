"""Training and caching victims (the recipe and image data: tests/nets/test_nets_training.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from phloem.attacks import training
from phloem.attacks.defences.base import Defence
from phloem.attacks.training import trained_victim, victim_cache_dir
from phloem.core.errors import ConfigError
from phloem.nets.training import ImageData, TrainParams, evaluate, load_images

FAST = TrainParams(epochs=1, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0)  # type: ignore[arg-type]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # pytest -n 2 on a 2-core machine: one thread per worker instead of oversubscribing
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_images("digits")


@pytest.fixture(scope="module")
def few(digits: ImageData) -> ImageData:
    """320 training images: enough for the cache's behaviour, a quarter of the cost."""
    return ImageData(
        "digits", digits.x_train[:320], digits.y_train[:320], digits.x_test, digits.y_test
    )


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------------------------
# the training loop


def test_train_learns_and_caches(
    digits: ImageData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = trained_victim("lenet", digits, train_params=FAST, seed=3, cache_dir=tmp_path)
    assert not first.from_cache
    assert first.accuracy > 0.4  # chance is 0.1
    assert first.accuracy == evaluate(first.model, digits.x_test, digits.y_test)
    assert first.weights.is_file() and first.weights.with_suffix(".json").is_file()
    meta = json.loads(first.weights.with_suffix(".json").read_text())
    assert meta["data"]["fingerprint"] == digits.fingerprint and meta["seed"] == 3

    def no_training(*args: object, **kwargs: object) -> list[float]:
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(training, "train", no_training)
    second = trained_victim("lenet", digits, train_params=FAST, seed=3, cache_dir=tmp_path)
    assert second.from_cache and second.accuracy == first.accuracy
    assert _same_weights(first.model, second.model)
    assert not second.model.training


def test_same_seed_same_weights_other_seed_other_entry(few: ImageData, tmp_path: Path) -> None:
    a = trained_victim("lenet", few, train_params=FAST, seed=1, cache_dir=tmp_path / "a")
    b = trained_victim("lenet", few, train_params=FAST, seed=1, cache_dir=tmp_path / "b")
    assert not b.from_cache and _same_weights(a.model, b.model)
    c = trained_victim("lenet", few, train_params=FAST, seed=2, cache_dir=tmp_path / "a")
    assert not c.from_cache and c.weights != a.weights


@pytest.mark.parametrize("damage", ["weights", "record", "key", "weights_gone"])
def test_damaged_cache_is_retrained_with_a_warning(
    damage: str, few: ImageData, tmp_path: Path
) -> None:
    first = trained_victim("lenet", few, train_params=FAST, cache_dir=tmp_path)
    record = first.weights.with_suffix(".json")
    if damage == "weights":
        first.weights.write_bytes(b"not a torch file")
    elif damage == "record":
        record.write_text('{"key": ')
    elif damage == "key":
        record.write_text(json.dumps({**json.loads(record.read_text()), "key": "0" * 32}))
    else:
        first.weights.unlink()
    with pytest.warns(UserWarning, match="retraining"):
        again = trained_victim("lenet", few, train_params=FAST, cache_dir=tmp_path)
    assert not again.from_cache and _same_weights(first.model, again.model)
    third = trained_victim("lenet", few, train_params=FAST, cache_dir=tmp_path)
    assert third.from_cache  # the entry was rewritten


def test_wrong_image_shape_is_a_config_error(few: ImageData, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(3, 32, 32\)"):
        trained_victim("resnet20", few, train_params=FAST, cache_dir=tmp_path)


def test_default_cache_dir_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHLOEM_CACHE_DIR", str(tmp_path))
    assert victim_cache_dir() == tmp_path / "victims"


# --------------------------------------------------------------------------------------------
# a training-time defence's penalty


@dataclass(frozen=True)
class _ShrinkParams:
    weight: float = 1.0


class _Shrink(Defence):
    """A toy NoPeek stand-in: penalises the IR's energy at the split."""

    name: ClassVar[str] = "shrink"
    description: ClassVar[str] = "test: IR energy penalty"
    Params: ClassVar[type[_ShrinkParams]] = _ShrinkParams
    trains_victim: ClassVar[bool] = True

    def __init__(self, params: _ShrinkParams | None = None) -> None:
        super().__init__(params)
        self.shapes: list[tuple[int, ...]] = []

    def apply(self, ir: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return ir

    def penalty(self, x: torch.Tensor, ir: torch.Tensor) -> torch.Tensor | None:
        self.shapes.append(tuple(ir.shape[1:]))
        weight: float = self.params.weight
        return weight * ir.pow(2).mean()


def test_defence_penalty_is_added_at_the_split(few: ImageData, tmp_path: Path) -> None:
    plain = trained_victim("lenet", few, train_params=FAST, cache_dir=tmp_path)
    shrink = _Shrink(_ShrinkParams(weight=10.0))
    shaped = trained_victim(
        "lenet", few, train_params=FAST, cache_dir=tmp_path, defence=shrink, split="pool1"
    )
    assert not shaped.from_cache and shaped.weights != plain.weights
    assert shrink.shapes and set(shrink.shapes) == {(6, 14, 14)}
    x = few.x_test[:200]
    with torch.no_grad():
        e_plain = plain.model.edge("pool1")(x).pow(2).mean()
        e_shaped = shaped.model.edge("pool1")(x).pow(2).mean()
    assert e_shaped < e_plain


def test_defence_needs_a_valid_split(few: ImageData, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        trained_victim("lenet", few, train_params=FAST, cache_dir=tmp_path, defence=_Shrink())
    assert info.value.field == "victim.split"
    with pytest.raises(ConfigError, match="pool2"):
        trained_victim(
            "lenet", few, train_params=FAST, cache_dir=tmp_path, defence=_Shrink(), split="x"
        )


def test_finetune_cloud_recovers_accuracy_under_a_defence_and_leaves_the_edge_alone(
    few: ImageData, tmp_path: Path
) -> None:
    """A deployment retrains the cloud part behind a defence: on heavily noised IRs the
    retrained cloud part beats the original, while the edge's weights and batch-norm
    statistics (and so what an attacker sees) do not change."""
    import copy

    from phloem.attacks.defences.base import DefendedEdge
    from phloem.attacks.defences.gaussian_noise import GaussianNoise, GaussianNoiseParams
    from phloem.attacks.training import finetune_cloud

    tv = trained_victim("lenet", few, train_params=FAST, seed=0, cache_dir=tmp_path)
    edge_before = copy.deepcopy(tv.model.edge("pool1").state_dict())
    noise = GaussianNoise(GaussianNoiseParams(sigma=3.0, relative=True))
    edge = DefendedEdge(tv.model.edge("pool1"), [noise], torch.Generator().manual_seed(1))
    cloud = copy.deepcopy(tv.model.cloud("pool1"))
    before = evaluate(torch.nn.Sequential(edge, cloud), few.x_test, few.y_test)
    recipe = TrainParams(epochs=3, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0)  # type: ignore[arg-type]
    losses = finetune_cloud(edge, cloud, few.x_train, few.y_train, recipe, torch.Generator())
    after = evaluate(torch.nn.Sequential(edge, cloud), few.x_test, few.y_test)
    assert len(losses) == 3 and after > before + 0.05
    after_edge = tv.model.edge("pool1").state_dict()
    assert all(torch.equal(edge_before[k], after_edge[k]) for k in edge_before)
    # the victim's own cloud part was a copy's source, not trained
    again = trained_victim("lenet", few, train_params=FAST, seed=0, cache_dir=tmp_path)
    assert _same_weights(tv.model, again.model)
