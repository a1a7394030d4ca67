"""Each loss term of both stages against a value computed by hand (numpy, independent of bgmatting.losses), on a
4 x 4 batch chosen so that masks (> vs >=, inverted) and the F = I rule for opaque pixels change the numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bgmatting import losses
from bgmatting.engine.stages import AdobeStage, Networks, RealStage, SupervisionSchedule
from bgmatting.models import RawMatte

EPS = 1e-6
KX = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float64)
KY = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float64)


class FixedOutputs(nn.Module):
    """A stand-in matting model: returns the given network-space alpha and F for any input (raw=True)."""

    def __init__(self, alpha_raw: np.ndarray, foreground_raw: np.ndarray) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))  # something for an optimiser
        self.alpha_raw = torch.tensor(alpha_raw, dtype=torch.float32)[None, None]
        self.foreground_raw = torch.tensor(foreground_raw, dtype=torch.float32)[None]

    def forward(self, image, background, segmentation, motion, raw=False):
        assert raw
        return RawMatte(self.alpha_raw + self.weight, self.foreground_raw + self.weight, image * 2 - 1)


class FirstChannel(nn.Module):
    """A stand-in discriminator: its score map is the input's first channel."""

    def forward(self, x):
        return x[:, :1]


def sobel(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    padded = np.pad(x, 1)
    return np.array([[np.sum(kernel * padded[i:i + 3, j:j + 3]) for j in range(x.shape[1])]
                     for i in range(x.shape[0])])


def l1(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """sum |p - t| over channels and masked pixels / (masked pixel count + eps): the public code's normalisation."""
    mask = np.ones(prediction.shape[-2:]) if mask is None else mask
    return float(np.sum(np.abs(prediction - target) * mask) / (mask.sum() + EPS))


# A 4 x 4 scene (all in [0, 1] unless said). Alpha: exact zeros in the left column (where the prediction's F
# differs from the truth), fractions, ones. The prediction is opaque (raw alpha > 0.95) in the right column,
# where its F differs from the image.
ALPHA = np.array([[0.0, 0.2, 0.6, 1.0], [0.0, 0.4, 0.8, 1.0], [0.0, 0.5, 1.0, 1.0], [0.0, 0.3, 0.7, 1.0]])
rng = np.random.default_rng(7)
FOREGROUND = rng.uniform(0.2, 0.9, (3, 4, 4))
BACKGROUND = rng.uniform(0.0, 0.6, (3, 4, 4))
IMAGE = ALPHA * FOREGROUND + (1 - ALPHA) * BACKGROUND
ALPHA_RAW = np.array([[-1.0, -0.5, 0.3, 0.99], [-0.9, -0.2, 0.6, 0.97], [-0.8, 0.0, 0.9, 0.96],
                      [-0.98, -0.4, 0.5, 1.0]])  # column 3: opaque (> 0.95)
FOREGROUND_RAW = rng.uniform(-0.8, 0.8, (3, 4, 4))


def batch(**extra) -> dict[str, torch.Tensor]:
    def t(a):
        return torch.tensor(a, dtype=torch.float32)[None]

    sample = {"image": t(IMAGE), "background": t(BACKGROUND), "background_clean": t(BACKGROUND),
              "segmentation": t(ALPHA[None] > 0.5), "motion": t(np.repeat(IMAGE.mean(0, keepdims=True), 4, 0)),
              "alpha": t(ALPHA[None]), "foreground": t(FOREGROUND)}
    sample.update({k: t(v) for k, v in extra.items()})
    return sample


def opaque_as_image(foreground_raw: np.ndarray, alpha_raw: np.ndarray) -> np.ndarray:
    """F with the network-space image copied where raw alpha > 0.95 (alpha > 0.975)."""
    return np.where(alpha_raw[None] > 0.95, IMAGE * 2 - 1, foreground_raw)


def recomposite(alpha_raw: np.ndarray, foreground_raw: np.ndarray, background: np.ndarray) -> np.ndarray:
    a = (alpha_raw + 1) / 2
    return a[None] * foreground_raw + (1 - a[None]) * (background * 2 - 1)


def test_adobe_stage_terms_equal_hand_computed_values():
    stage = AdobeStage(Networks(FixedOutputs(ALPHA_RAW, FOREGROUND_RAW)))
    (update,) = list(stage.updates(batch(), step=0, epoch=0))
    terms = {name: float(term.value.detach()) for name, term in update.terms.items()}
    true_alpha = ALPHA * 2 - 1
    expected = {
        "alpha": l1(ALPHA_RAW, true_alpha),
        "alpha_gradient": l1(sobel(ALPHA_RAW, KX), sobel(true_alpha, KX)) + l1(sobel(ALPHA_RAW, KY),
                                                                               sobel(true_alpha, KY)),
        "foreground": l1(FOREGROUND_RAW, FOREGROUND * 2 - 1, (ALPHA > 0).astype(float)),  # alpha > 0, not >= 0
        "composite": l1(recomposite(ALPHA_RAW, opaque_as_image(FOREGROUND_RAW, ALPHA_RAW), BACKGROUND), IMAGE * 2 - 1),
    }
    assert terms == pytest.approx(expected, rel=1e-5)
    assert {n: t.weight for n, t in update.terms.items()} == {"alpha": 1.0, "alpha_gradient": 1.0, "foreground": 2.0,
                                                              "composite": 1.0}
    # the numbers the mutations would give really differ (so the test can tell them apart)
    assert expected["foreground"] != pytest.approx(l1(FOREGROUND_RAW, FOREGROUND * 2 - 1, np.ones((4, 4))), rel=1e-3)
    assert expected["composite"] != pytest.approx(l1(recomposite(ALPHA_RAW, FOREGROUND_RAW, BACKGROUND),
                                                     IMAGE * 2 - 1), rel=1e-3)


def test_adobe_stage_unknown_band_term_scores_only_the_trimaps_unknown_pixels():
    trimap = np.where(ALPHA == 0, 0, np.where(ALPHA == 1, 255, 128)).astype(np.uint8)
    weights = {"alpha": 1.0, "alpha_gradient": 1.0, "foreground": 2.0, "composite": 1.0, "alpha_unknown": 3.0}
    stage = AdobeStage(Networks(FixedOutputs(ALPHA_RAW, FOREGROUND_RAW)), losses=weights)
    sample = batch()
    sample["trimap"] = torch.tensor(trimap)[None, None]
    (update,) = list(stage.updates(sample, step=0, epoch=0))
    expected = l1(ALPHA_RAW, ALPHA * 2 - 1, (trimap == 128).astype(float))
    assert float(update.terms["alpha_unknown"].value) == pytest.approx(expected, rel=1e-5)
    assert update.terms["alpha_unknown"].weight == 3.0
    assert expected != pytest.approx(l1(ALPHA_RAW, ALPHA * 2 - 1), rel=1e-3)  # not the whole-image term
    (default,) = list(AdobeStage(Networks(FixedOutputs(ALPHA_RAW, FOREGROUND_RAW))).updates(sample, step=0, epoch=0))
    assert "alpha_unknown" not in default.terms  # weight 0 by default: the paper's loss
    with pytest.raises(KeyError, match=r"stage adobe needs batch keys \['trimap'\]"):
        next(stage.updates(batch(), step=0, epoch=0))  # the term needs the trimap: said, not a bare KeyError


def test_adobe_stage_laplacian_term_is_the_pyramid_l1_of_the_network_space_alpha():
    weights = {"alpha": 1.0, "alpha_gradient": 1.0, "foreground": 2.0, "composite": 1.0, "alpha_laplacian": 0.5}
    (update,) = list(AdobeStage(Networks(FixedOutputs(ALPHA_RAW, FOREGROUND_RAW)), losses=weights).updates(
        batch(), step=0, epoch=0))
    expected = losses.laplacian_l1(torch.tensor(ALPHA_RAW)[None, None].float(),
                                   torch.tensor(ALPHA * 2 - 1)[None, None].float())
    assert float(update.terms["alpha_laplacian"].value) == pytest.approx(float(expected), rel=1e-5)
    assert float(expected) > 0 and update.terms["alpha_laplacian"].weight == 0.5
    (default,) = list(AdobeStage(Networks(FixedOutputs(ALPHA_RAW, FOREGROUND_RAW))).updates(batch(), step=0, epoch=0))
    assert "alpha_laplacian" not in default.terms  # weight 0 by default: the paper's loss


def test_real_stage_terms_equal_hand_computed_values():
    # the teacher's alpha is exactly the public code's F-mask threshold (-0.98 raw = 0.01) in one column
    teacher_alpha = np.array([[-0.98, -0.5, 0.3, 0.99], [-0.98, -0.2, 0.6, 0.97], [-0.98, 0.0, 0.9, 0.96],
                              [-0.98, -0.4, 0.5, 1.0]])
    teacher_fg = rng.uniform(-0.8, 0.8, (3, 4, 4))
    target = rng.uniform(0.0, 1.0, (3, 4, 4))
    stage = RealStage(Networks(FixedOutputs(ALPHA_RAW, FOREGROUND_RAW), FirstChannel(), FixedOutputs(teacher_alpha, teacher_fg)),
                      supervision=SupervisionSchedule(weight=0.05), discriminator_every=1, foreground_mask_alpha=0.01,
                      fake_target_probability=1.0, seed=0)
    sample = batch(target_background=target)
    sample["segmentation"] = torch.zeros_like(sample["segmentation"])  # no subject columns: the shift is 0
    generator_update, discriminator_update = list(stage.updates(sample, step=0, epoch=0))
    terms = {name: float(term.value.detach()) for name, term in generator_update.terms.items()}
    # the fake: the predicted subject (F := I where opaque) over the target background, unshifted
    fake = recomposite(ALPHA_RAW, opaque_as_image(FOREGROUND_RAW, ALPHA_RAW), target)
    expected = {
        "alpha": l1(ALPHA_RAW, teacher_alpha),
        "alpha_gradient": l1(sobel(ALPHA_RAW, KX), sobel(teacher_alpha, KX)) + l1(sobel(ALPHA_RAW, KY),
                                                                                  sobel(teacher_alpha, KY)),
        "foreground": l1(FOREGROUND_RAW, teacher_fg, (teacher_alpha > -0.98).astype(float)),  # >, not >=
        "composite": l1(recomposite(ALPHA_RAW, FOREGROUND_RAW, BACKGROUND), IMAGE * 2 - 1),
        "gan": float(np.mean((fake[0] - 1.0) ** 2)),  # LSGAN: D(fake) toward 1 ("real")
    }
    assert terms == pytest.approx(expected, rel=1e-5)
    weights = {n: t.weight for n, t in generator_update.terms.items()}
    assert weights == pytest.approx({"gan": 1.0, "alpha": 0.1, "alpha_gradient": 0.2, "foreground": 0.05,
                                     "composite": 0.05})
    real_part, fake_part = (discriminator_update.extra[k] for k in ("discriminator_real", "discriminator_fake"))
    assert real_part == pytest.approx(float(np.mean((IMAGE[0] * 2 - 1 - 1.0) ** 2)), rel=1e-5)  # D(real) toward 1
    assert fake_part == pytest.approx(float(np.mean(fake[0] ** 2)), rel=1e-5)  # D(fake) toward 0
    assert float(discriminator_update.terms["discriminator"].value.detach()) == pytest.approx(0.5 * (real_part + fake_part))
    assert expected["foreground"] != pytest.approx(l1(FOREGROUND_RAW, teacher_fg, (teacher_alpha >= -0.98) * 1.0),
                                                   rel=1e-3)
    unreplaced = recomposite(ALPHA_RAW, FOREGROUND_RAW, target)
    assert expected["gan"] != pytest.approx(float(np.mean((unreplaced[0] - 1.0) ** 2)), rel=1e-3)
