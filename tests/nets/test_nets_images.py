"""Image files (:mod:`phloem.nets.images`): fitting to a shape, and a user's labelled folder
with damaged and foreign files among the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from phloem.core.errors import ConfigError, DataNotFoundError
from phloem.nets.images import fit_shape, read_labelled


def test_fit_shape_matches_channels_and_size() -> None:
    grey = torch.rand(2, 1, 10, 10)
    colour = fit_shape(grey, (3, 5, 5))
    assert colour.shape == (2, 3, 5, 5) and torch.equal(colour[:, 0], colour[:, 2])
    back = fit_shape(torch.rand(2, 3, 8, 8), (1, 8, 8))
    assert back.shape == (2, 1, 8, 8)


def write_image(path: Path, value: int, size: int = 12) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def test_a_labelled_folder_skips_and_counts_what_it_cannot_read(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / "cat" / f"{i}.png", 30)
        write_image(tmp_path / "dog" / f"{i}.jpg", 220, size=20)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    x, y, classes, skipped = read_labelled(tmp_path, (1, 8, 8))
    assert classes == ("cat", "dog") and x.shape == (6, 1, 8, 8)
    assert y.tolist() == [0, 0, 0, 1, 1, 1]
    assert float(x[0].mean()) < 0.2 < 0.8 < float(x[-1].mean())
    assert sum(skipped.values()) == 1  # the damaged PNG; the .txt is not an image file


def test_a_folder_that_cannot_train_a_classifier_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError):
        read_labelled(tmp_path / "missing", (1, 8, 8))
    write_image(tmp_path / "only" / "a.png", 10)
    with pytest.raises(ConfigError, match="two"):
        read_labelled(tmp_path, (1, 8, 8))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.png").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="two"):
        read_labelled(tmp_path, (1, 8, 8))
