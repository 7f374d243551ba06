"""Tests for :mod:`phloem.attacks.experiment`: a config runs end to end into a run folder, and a
bad config names its field. Small and fast: LeNet on the bundled digits, cheap attacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from attack_configs import SMALL

from phloem.attacks.experiment import ExperimentConfig, load_config, run_experiment
from phloem.core.errors import ConfigError


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHLOEM_CACHE_DIR", str(tmp_path / "cache"))


def _config(tmp_path: Path, text: str = SMALL, *overrides: str) -> ExperimentConfig:
    path = tmp_path / "c.toml"
    path.write_text(text + f'\nout_dir = "{tmp_path / "runs"}"\n')
    return load_config(path, list(overrides))


def test_a_config_runs_every_seed_into_one_run_folder(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert [d.name for d in cfg.defences] == ["gaussian_noise"]
    result = run_experiment(cfg)
    assert [r["seed"] for r in result.rows] == [0.0, 1.0]
    mean, half = result.summary["ssim"]
    assert 0.0 < mean < 1.0 and half >= 0.0  # two seeds: a finite interval
    assert 0.0 < result.summary["victim_accuracy"][0] <= 1.0
    folder = result.run_dir
    saved = json.loads((folder / "results.json").read_text())
    assert set(saved["summary"]) >= {"ssim", "ssim_he", "psnr", "identification"}
    report = (folder / "report.md").read_text()
    assert "Gaussian 11x11" in report and "uniform 7x7" in report
    assert (folder / "plots" / "grid.png").stat().st_size > 1000
    assert load_config(folder / "config.toml") == cfg  # the saved config runs again as is


def test_overrides_switch_parts_and_bad_values_name_their_field(tmp_path: Path) -> None:
    cfg = _config(tmp_path, SMALL, "attack.name=mean-image", "run.seeds=[3]")
    assert cfg.attack.name == "mean-image" and cfg.run.seeds == (3,)
    bad = [
        ("victim.name=alexnet", "victim.name"),
        ("attack.epochs=3", "attack.epochs"),  # a key of another attack
        ("threat.access=grey-box", "threat.access"),
        ("private.count=0", "count"),
        ("run.seeds=[]", "run.seeds"),
    ]
    for override, field in bad:
        with pytest.raises(ConfigError) as err:
            _config(tmp_path, SMALL, override)
        assert field in str(err.value), (override, err.value)


def test_a_split_the_victim_lacks_is_refused_with_the_splits(tmp_path: Path) -> None:
    cfg = _config(tmp_path, SMALL, "victim.split=ReLU22", "run.seeds=[0]")
    with pytest.raises(ConfigError, match=r"victim\.split") as err:
        run_experiment(cfg)
    assert "pool1" in str(err.value)


def test_a_sweep_over_a_defence_parameter_draws_the_defence_plot(tmp_path: Path) -> None:
    """He et al.'s form: accuracy against attacker SSIM as the noise grows; more noise leaks
    less (the nearest neighbour's SSIM falls) and costs accuracy."""
    from phloem.attacks.sweep import run_sweep

    path = tmp_path / "c.toml"
    path.write_text(SMALL.replace("seeds = [0, 1]", "seeds = [0]") + f'\nout_dir = "{tmp_path}"\n')
    sweep = run_sweep(path, ["defences.0.sigma=0,1,8"])
    assert sweep.defence_plot is not None and sweep.defence_plot.stat().st_size > 1000
    assert sweep.grid is not None and sweep.grid.stat().st_size > 1000  # private + 3 rows
    ssim = [r.result.summary["ssim"][0] for r in sweep.rows]
    accuracy = [r.result.summary["defended_accuracy"][0] for r in sweep.rows]
    assert ssim[0] > ssim[2] and accuracy[0] > accuracy[2], (ssim, accuracy)
    with pytest.raises(ConfigError, match="no entry '3'"):
        run_sweep(path, ["defences.3.sigma=1"])


def test_an_interrupted_run_keeps_the_seeds_it_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during the second seed: results.json holds the first, marked interrupted."""
    from phloem.attacks import experiment

    real = experiment._seed_row
    calls: list[int] = []

    def stop_on_second(*args: object, **kw: object) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(experiment, "_seed_row", stop_on_second)
    cfg = _config(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg)
    (folder,) = (tmp_path / "runs").iterdir()
    saved = json.loads((folder / "results.json").read_text())
    assert saved["status"] == "interrupted" and [r["seed"] for r in saved["rows"]] == [0.0]
    assert "ssim" in saved["summary"]
    # resuming runs only the missing seed, keeps seed 0 as measured, and equals a fresh run
    monkeypatch.setattr(experiment, "_seed_row", real)
    resumed = experiment.resume_experiment(folder)
    assert resumed.run_dir == folder and [r["seed"] for r in resumed.rows] == [0.0, 1.0]
    assert resumed.rows[0] == saved["rows"][0]
    fresh = run_experiment(cfg)
    for got, want in zip(resumed.rows, fresh.rows, strict=True):
        assert got["ssim"] == pytest.approx(want["ssim"], abs=1e-6)
    done = json.loads((folder / "results.json").read_text())
    assert done["status"] == "finished" and (folder / "report.md").is_file()


def test_resuming_adds_seeds_but_refuses_a_different_experiment_or_a_corrupt_record(
    tmp_path: Path,
) -> None:
    from phloem.attacks.experiment import resume_experiment
    from phloem.core.errors import RunNotFoundError

    cfg = _config(tmp_path, SMALL, "attack.name=mean-image", "run.seeds=[0]")
    first = run_experiment(cfg)
    more = resume_experiment(first.run_dir, ["run.seeds=[0, 2]"])
    assert [r["seed"] for r in more.rows] == [0.0, 2.0] and more.rows[0] == first.rows[0]
    for override, field in [
        ("victim.split=pool2", "victim.split"),
        ("defences.0.sigma=2", "defences"),
    ]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            resume_experiment(first.run_dir, [override])
    record = json.loads((first.run_dir / "results.json").read_text())
    forged = [
        '{"rows": [{"seed": "x"}]',  # truncated JSON
        json.dumps({"rows": [{"seed": 0}]}),  # a row without its metrics
        json.dumps({"rows": [{**record["rows"][0], "seed": float("nan")}]}),
        json.dumps({"rows": [{**record["rows"][0], "seed": -1}]}),
        json.dumps({"rows": "all"}),
    ]
    for text in forged:
        (first.run_dir / "results.json").write_text(text)
        with pytest.raises(RunNotFoundError, match=r"results\.json cannot be read"):
            resume_experiment(first.run_dir)
    with pytest.raises(RunNotFoundError, match="not a phloem run folder"):
        resume_experiment(tmp_path / "nowhere")


def test_a_victim_seed_pins_the_victim_across_run_seeds(tmp_path: Path) -> None:
    cfg = _config(tmp_path, SMALL, "attack.name=mean-image", "victim.seed=5")
    rows = run_experiment(cfg).rows
    assert rows[0]["victim_accuracy"] == rows[1]["victim_accuracy"]
    cache = list((tmp_path / "cache" / "victims").glob("*.pt"))
    assert len(cache) == 1
    with pytest.raises(ConfigError, match=r"victim\.seed"):
        _config(tmp_path, SMALL, "victim.seed=-1")


def test_an_interrupted_sweep_resumes_reusing_its_finished_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phloem.attacks import experiment
    from phloem.attacks.sweep import run_sweep

    path = tmp_path / "c.toml"
    path.write_text(SMALL.replace("seeds = [0, 1]", "seeds = [0]") + f'\nout_dir = "{tmp_path}"\n')
    grid = ["defences.0.sigma=0,1,2"]
    real = experiment._seed_row
    calls: list[int] = []

    def stop_on_third(*args: object, **kw: object) -> dict[str, float]:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(experiment, "_seed_row", stop_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(path, grid)
    (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("sweep-")]
    runs_before = sorted(p.parent.name for p in folder.glob("*/config.toml"))
    assert len(runs_before) == 3
    monkeypatch.setattr(experiment, "_seed_row", real)
    calls.clear()
    counted: list[int] = []

    def count(*args: object, **kw: object) -> dict[str, float]:
        counted.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(experiment, "_seed_row", count)
    sweep = run_sweep(path, grid, resume=folder)
    assert len(counted) == 1  # only the interrupted combination ran
    assert sorted(p.parent.name for p in folder.glob("*/config.toml")) == runs_before
    assert [r.values for r in sweep.rows] == [("0",), ("1",), ("2",)]
    assert sweep.table.is_file()


def test_an_image_count_that_cannot_fit_in_memory_fails_at_once_naming_it(tmp_path: Path) -> None:
    cfg = _config(tmp_path, SMALL, "aux.name=noise", "aux.count=1000000000", "run.seeds=[0]")
    with pytest.raises(ConfigError, match=r"aux\.count") as err:
        run_experiment(cfg)
    assert "GiB" in str(err.value)


def test_a_training_time_defence_trains_its_own_victim(tmp_path: Path) -> None:
    """NoPeek shapes the victim: a run with it trains (and caches) a victim of its own, whose
    IRs a nearest-neighbour attacker reads worse; two training-time defences are refused."""
    base = SMALL.replace('name = "gaussian_noise"\nsigma = 0.1', 'name = "nopeek"\nweight = 0.0')
    sets = ("run.seeds=[0]", "victim.train.epochs=5")
    plain = run_experiment(_config(tmp_path, base, *sets))
    shaped = run_experiment(_config(tmp_path, base, *sets, "defences.0.weight=20"))
    assert len(list((tmp_path / "cache" / "victims").glob("*.pt"))) == 2
    assert shaped.rows[0]["victim_accuracy"] != plain.rows[0]["victim_accuracy"]
    assert shaped.rows[0]["ssim"] < plain.rows[0]["ssim"], (shaped.rows, plain.rows)
    two = base.replace("[run]", '[[defences]]\nname = "nopeek"\n[run]')
    with pytest.raises(ConfigError, match="training-time defences"):
        run_experiment(_config(tmp_path, two, "run.seeds=[0]"))


def test_finetuning_the_cloud_part_changes_the_deployed_accuracy_not_the_leakage(
    tmp_path: Path,
) -> None:
    """``[victim.finetune]`` retrains the cloud part behind a heavy defence: the deployed
    accuracy rises; the victim, the attack and so every leakage metric stay as they were."""
    heavy = SMALL.replace("sigma = 0.1", "sigma = 4.0\nrelative = true")
    sets = ("run.seeds=[0]", "victim.train.epochs=3")
    plain = run_experiment(_config(tmp_path, heavy, *sets, "run.name=plain"))
    tuned = run_experiment(
        _config(
            tmp_path,
            heavy,
            *sets,
            "run.name=tuned",
            "victim.finetune.epochs=3",
            "victim.finetune.optimizer=adam",
            "victim.finetune.lr=0.001",
        )
    )
    p, t = plain.rows[0], tuned.rows[0]
    assert t["defended_accuracy"] > p["defended_accuracy"] + 0.05, (p, t)
    assert t["victim_accuracy"] == p["victim_accuracy"]
    assert all(t[m] == p[m] for m in ("ssim", "psnr", "identification"))
    with pytest.raises(ConfigError) as err:  # named where the user wrote it
        _config(tmp_path, heavy, "victim.finetune.epochs=0")
    assert err.value.field == "victim.finetune.epochs"


def test_progress_reports_the_victims_and_the_inverters_epochs(tmp_path: Path) -> None:
    """A long seed is not silent: ``on_progress`` hears each victim epoch (when it trains)
    and each epoch of a learned inverter, with its loss."""
    heard: list[str] = []
    cfg = _config(
        tmp_path,
        SMALL,
        "run.seeds=[0]",
        "victim.train.epochs=2",
        "attack.name=inverse-net",
        "attack.epochs=2",
        "attack.width=8",
    )
    run_experiment(cfg, on_progress=heard.append)
    assert sum("lenet epoch" in line for line in heard) == 2, heard
    assert [line.split("inverse-net ")[1][:9] for line in heard if "mse loss" in line] == [
        "epoch 1/2",
        "epoch 2/2",
    ], heard
