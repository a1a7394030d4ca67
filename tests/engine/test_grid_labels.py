"""TensorBoard's image grid: one column per visual under a strip that names each column."""
from __future__ import annotations

import torch
from torchvision.utils import make_grid

from bgmatting.engine.run_logging import PADDING, column_labels, image_grid


def test_grid_has_a_label_over_every_column_and_the_pictures_below():
    visuals = {"alpha_pred": torch.rand(2, 1, 48, 48), "image": torch.rand(2, 3, 48, 48), "extra": torch.rand(2, 3, 48, 48)}
    grid = image_grid(visuals)
    names = ["image", "alpha_pred", "extra"]  # GRID_ORDER first, others after
    strip = column_labels(names, 48)
    assert grid.shape[0] == 3 and grid.shape[2] == strip.shape[2] == PADDING + 3 * (48 + PADDING)
    torch.testing.assert_close(grid[:, : strip.shape[1]], strip)
    for column in range(3):  # dark text pixels above each column, white between them
        left = PADDING + column * (48 + PADDING)
        assert (strip[:, :, left:left + 48] < 0.5).any()
    assert (strip[:, :, :PADDING] == 1).all()
    rows = torch.stack([visuals["image"], visuals["alpha_pred"].expand(-1, 3, -1, -1), visuals["extra"]], 1).flatten(0, 1)
    torch.testing.assert_close(grid[:, strip.shape[1]:], make_grid(rows, nrow=3, padding=PADDING, pad_value=1.0))
