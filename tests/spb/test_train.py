"""Tests for :mod:`phloem.spb.train`: runs on the built-in digits, resume after an interrupt
equals an uninterrupted run, divergence keeps what was done, bad configs name their field, and
virtual workers equal real torchrun processes (and torch's DDP) at the training level."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from phloem.core.errors import ConfigError, DivergenceError, RunNotFoundError
from phloem.core.history import Row
from phloem.spb.config import TrainConfig, load_config
from phloem.spb.train import launch, resume_training, train

BASE = [
    "model.name=lenet",
    "data.name=digits",
    "train.batch_size=64",
    "train.lr=0.05",
    "spb.workers=4",
    "run.progress=false",
]


def cfg(tmp: Path, *sets: str) -> TrainConfig:
    return load_config(None, [*BASE, f"run.out_dir={tmp}", *sets])


def weights(run: Path) -> dict[str, torch.Tensor]:
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    return dict(ck["model"])


def test_a_run_keeps_history_summary_profile_and_checkpoint(tmp_path: Path) -> None:
    r = train(cfg(tmp_path, "train.epochs=2", "run.target_accuracy=0.3"))
    assert [row["epoch"] for row in r.history.rows] == [0, 1]
    assert r.summary["status"] == "finished"
    assert r.summary["depths_at_step0"] == [5, 5, 3, 3]
    assert r.summary["time_to_target"]["epoch"] in (0, 1)
    for f in ("config.toml", "history.jsonl", "summary.json", "profile.json", "checkpoint.pt"):
        assert (r.run_dir / f).is_file()
    last = r.history.last()
    assert isinstance(last["test_acc"], float) and last["test_acc"] > 0.3
    ranks = r.summary["ranks"]  # the shallow ranks did less backward work, the same traffic
    assert ranks[2]["backward_flops"] < ranks[0]["backward_flops"] / 2
    assert ranks[2]["peak_saved_bytes"] < ranks[0]["peak_saved_bytes"]
    assert ranks[2]["sent"] == ranks[0]["sent"]  # zeros sync: everyone sends every bucket


def test_resume_after_an_interrupt_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = train(cfg(tmp_path, "train.epochs=3", "plan.name=rotating"))

    def stop(row: Row) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg(tmp_path, "train.epochs=3", "plan.name=rotating"), on_epoch=stop)
    run = max((p for p in tmp_path.iterdir() if p != whole.run_dir), key=lambda p: p.name)
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    resumed = resume_training(run)
    assert [row["epoch"] for row in resumed.history.rows] == [0, 1, 2]
    assert resumed.summary["status"] == "finished"
    a, b = weights(whole.run_dir), weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history.last()["backward_flops"] == whole.history.last()["backward_flops"]


def test_divergence_keeps_the_history_and_says_so(tmp_path: Path) -> None:
    with pytest.raises(DivergenceError, match=r"lower train\.lr"):
        train(cfg(tmp_path, "train.epochs=2", "train.lr=1e12", "train.momentum=0.0"))
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["spb.workers=3"], "train.batch_size"),
        (["spb.workers=0"], "spb.workers"),
        (["spb.sync=ddp"], "spb.sync"),
        (["plan.name=dropbp"], "plan.name"),
        (["data.name=imagenet"], "data.name"),
        (["run.target_accuracy=nan"], "run.target_accuracy"),
        (["plan.depth_fraction=0"], "plan.depth_fraction"),
    ],
)
def test_bad_configs_name_the_field(tmp_path: Path, sets: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        cfg(tmp_path, *sets)
    assert field in str(e.value)


def test_data_that_does_not_fit_the_model_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="takes"):
        train(cfg(tmp_path, "model.name=resnet20", "data.name=digits"))
    with pytest.raises(ConfigError, match="batch_size"):
        train(cfg(tmp_path, "train.batch_size=4096"))
    with pytest.raises(ConfigError, match="nproc"):
        launch(cfg(tmp_path), 2)


def test_resume_of_a_folder_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError):
        resume_training(tmp_path)
    r = train(cfg(tmp_path, "train.epochs=1"))
    (r.run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunNotFoundError, match="cannot be read"):
        resume_training(r.run_dir)


def test_the_profile_plan_picks_its_depth_from_the_measured_costs(tmp_path: Path) -> None:
    r = train(cfg(tmp_path, "train.epochs=1", "plan.name=profile", "plan.backward_budget=0.5"))
    profile = json.loads((r.run_dir / "profile.json").read_text())
    full = profile["depths"][-1]["backward_flops"]
    shallow = r.summary["depths_at_step0"][-1]
    within = [d["depth"] for d in profile["depths"] if d["backward_flops"] <= 0.5 * full]
    assert shallow == max(within)


@pytest.mark.parametrize("sync", ["subgroup", "zeros", "reduce-scatter"])
def test_virtual_workers_equal_torchrun_processes(tmp_path: Path, sync: str) -> None:
    """The same config, run by virtual workers and by 4 gloo processes under torchrun: the
    same test accuracy, losses and weights up to summation order, and the same bytes per
    rank (the virtual run books what the real collectives were handed)."""
    c = cfg(tmp_path, "train.epochs=1", "plan.name=rotating", f"spb.sync={sync}")
    v, d = train(c), launch(c, 4, timeout_s=300)
    assert d.summary["mode"] == "torch.distributed"
    fv, fd = v.summary["final"], d.summary["final"]
    assert math.isclose(fv["train_loss"], fd["train_loss"], rel_tol=1e-4)
    assert abs(fv["test_acc"] - fd["test_acc"]) <= 2 / 360
    wv, wd = weights(v.run_dir), weights(d.run_dir)
    assert all(torch.allclose(wv[k], wd[k], atol=1e-4) for k in wv)
    assert [r["sent"] for r in v.summary["ranks"]] == [r["sent"] for r in d.summary["ranks"]]
    assert [r["received"] for r in v.summary["ranks"]] == [
        r["received"] for r in d.summary["ranks"]
    ]
    assert [r["backward_flops"] for r in v.summary["ranks"]] == [
        r["backward_flops"] for r in d.summary["ranks"]
    ]


def test_full_depth_equals_torch_ddp(tmp_path: Path) -> None:
    """Every depth at L is plain data parallelism: torch's DistributedDataParallel (4 gloo
    processes) ends where the virtual workers' zeros all-reduce does."""
    ddp = launch(cfg(tmp_path, "train.epochs=1", "plan.name=full", "spb.sync=ddp"), 4)
    ours = train(cfg(tmp_path, "train.epochs=1", "plan.name=full", "spb.sync=zeros"))
    wa, wb = weights(ddp.run_dir), weights(ours.run_dir)
    assert all(torch.allclose(wa[k], wb[k], atol=1e-4) for k in wa)
    assert math.isclose(
        ddp.summary["final"]["train_loss"], ours.summary["final"]["train_loss"], rel_tol=1e-4
    )


def test_torchrun_resume_takes_the_overrides(tmp_path: Path) -> None:
    """``phloem spb train --resume RUN --nproc 2 --set train.epochs=2``: the workers read the
    run folder's config, so the resumed config must be written there first."""
    first = launch(cfg(tmp_path, "train.epochs=1", "spb.workers=2"), 2)
    more = load_config(first.run_dir / "config.toml", ["train.epochs=2"])
    resumed = launch(more, 2, resume=first.run_dir)
    assert [row["epoch"] for row in resumed.history.rows] == [0, 1]
    assert resumed.summary["status"] == "finished"


# --------------------------------------------------------------------------------------------
# a user's own data, a careless user, a hostile file


def _own_folder(root: Path, per_class: int, classes: int = 3) -> None:
    """``classes`` subfolders of 28x28 PNGs whose class is a bright band's position."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (28, 28), dtype=np.uint8)
            img[:, 9 * c : 9 * c + 8] = 230
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")


def test_a_folder_of_500_own_images_trains_and_damaged_files_are_counted(
    tmp_path: Path,
) -> None:
    root = tmp_path / "mine"
    _own_folder(root, 167)  # 501 images
    (root / "class1" / "truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        r = train(
            cfg(
                tmp_path,
                "data.name=folder",
                f"data.path={root}",
                "train.epochs=3",
                "train.batch_size=32",
                "train.lr=0.01",  # these high-contrast bands blow up at 0.05, with any plan
            )
        )
    assert r.summary["status"] == "finished"
    assert r.history.last()["test_acc"] > 0.9  # a 20% test split, seeded, per class


def test_own_folders_with_too_many_classes_or_no_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.path"):
        train(cfg(tmp_path, "data.name=folder"))
    root = tmp_path / "many"
    _own_folder(root, 2, classes=12)
    with pytest.raises(ConfigError, match="12 classes"):
        train(cfg(tmp_path, "data.name=folder", f"data.path={root}", "train.batch_size=8"))


def test_one_image_per_worker_with_batch_norm_is_refused() -> None:
    with pytest.raises(ConfigError, match="batch norm"):
        load_config(None, ["model.name=resnet20", "train.batch_size=4", "spb.workers=4"])


def test_a_checkpoint_for_another_run_or_altered_is_refused(tmp_path: Path) -> None:
    r = train(cfg(tmp_path, "train.epochs=1"))
    ck = torch.load(r.run_dir / "checkpoint.pt", weights_only=True)
    for forged in (
        {**ck, "meters": ck["meters"][:2]},  # another world size
        {**ck, "wall_s": float("nan")},
        {**ck, "epoch": -7},
        {**ck, "model": {k: v[:1] for k, v in ck["model"].items()}},  # other shapes
        {k: v for k, v in ck.items() if k != "optimizer"},
    ):
        torch.save(forged, r.run_dir / "checkpoint.pt")
        with pytest.raises(RunNotFoundError, match="does not fit"):
            resume_training(r.run_dir)


def test_kill_9_mid_write_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    """A run killed while writing a history row: the torn row is dropped, the run goes on
    from its last checkpoint; a history row that is not metrics is refused."""
    r = train(cfg(tmp_path, "train.epochs=2"))
    with (r.run_dir / "history.jsonl").open("a") as fh:
        fh.write('{"epoch": 2, "test_a')
    (r.run_dir / "checkpoint.tmp").write_bytes(b"half")  # the atomic write's leftover
    resumed = resume_training(r.run_dir, ["train.epochs=3"])
    assert [row["epoch"] for row in resumed.history.rows] == [0, 1, 2]
    lines = (r.run_dir / "history.jsonl").read_text().splitlines()
    (r.run_dir / "history.jsonl").write_text('{"epoch": {"a": 1}}\n' + "\n".join(lines[1:]))
    with pytest.raises(RunNotFoundError, match="cannot be read"):
        resume_training(r.run_dir, ["train.epochs=4"])
