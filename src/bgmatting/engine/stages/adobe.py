"""The supervised stage on composites with ground truth (paper Sec. 3.1; public code train_adobe.py)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

from bgmatting import losses
from bgmatting.data.compositing import composite
from bgmatting.engine.stages.base import (
    LossTerm,
    Networks,
    Stage,
    Update,
    alpha_threshold_raw,
    check_weights,
    visuals_of,
)
from bgmatting.models import RawMatte
from bgmatting.runtime import Precision
from bgmatting.space import from_network


class AdobeStage(Stage):
    """Supervised stage: L1(alpha) + L1(grad alpha) + 2 L1(F, alpha>0) + L1(I, alpha F + (1-alpha) B).

    The network sees the perturbed captured background ``background`` while the compositional loss uses
    the clean ``background_clean`` the image was made with (paper and public code).

    With a refining model (a :class:`~bgmatting.models.MattingModel` with a refiner) the four terms score the
    refined full-resolution outputs, and the same four score the base's coarse outputs against the ground
    truth brought to the base resolution (``coarse_*``, :meth:`bgmatting.models.RawMatte.coarse_truth`), plus
    ``error``: the MSE of the predicted error map against |coarse alpha - true alpha| at the base resolution
    (BackgroundMattingV2 scores both outputs alike and regresses the error map; the compositional terms are
    the paper's). A plain model gets exactly the four terms.

    Args:
        networks: the run's networks; this stage trains ``networks.model``.
        precision: unused by this stage (its only network carries its own); kept for a uniform constructor.
        losses: weights of ``alpha``, ``alpha_gradient``, ``foreground``, ``composite`` (paper: 1, 1, 2, 1),
            ``alpha_unknown`` (ours, default 0: alpha L1 on the trimap's unknown band only, where Deep Image
            Matting puts its whole alpha loss and where the DIM metrics score), ``alpha_laplacian`` (ours, default
            0: L1 of the alpha's Laplacian pyramids, 5 levels, RobustVideoMatting's alpha loss) and,
            used with a refiner only, ``coarse_alpha`` ... ``coarse_composite`` and ``error`` (default 1, 1, 2, 1
            and 1); a term missing from a given dict has weight 0.
        foreground_mask_alpha: the foreground loss counts pixels with true alpha > this (paper: 0; the
            public code uses alpha > 0.005, i.e. -0.99 in network space).
        compose_opaque_alpha: in the compositional loss F is replaced by I where predicted alpha > this
            (public code: 0.975, i.e. 0.95 raw); None disables the replacement.
        seed: unused (this stage draws nothing); kept for a uniform constructor.
    """

    name = "adobe"
    TERMS = ("alpha", "alpha_gradient", "foreground", "composite")
    REFINE_TERMS = tuple(f"coarse_{t}" for t in TERMS) + ("error",)
    EXTRA_TERMS = ("alpha_unknown", "alpha_laplacian")
    BATCH_KEYS = ("image", "background", "background_clean", "segmentation", "motion", "alpha", "foreground")
    TRUTH_KEYS = ("alpha", "foreground", "background_clean")

    def __init__(
        self,
        networks: Networks,
        precision: Precision | None = None,
        losses: Mapping[str, float] | None = None,
        foreground_mask_alpha: float = 0.0,
        compose_opaque_alpha: float | None = 0.975,
        seed: int = 0,
        name: str | None = None,
    ):
        super().__init__(networks, precision, name)
        defaults = {"alpha": 1.0, "alpha_gradient": 1.0, "foreground": 2.0, "composite": 1.0}
        defaults.update({f"coarse_{t}": w for t, w in defaults.items()}, error=1.0)
        allowed = self.TERMS + self.REFINE_TERMS + self.EXTRA_TERMS
        self.weights = check_weights(defaults if losses is None else losses, allowed, self.name)
        self.foreground_mask_alpha = foreground_mask_alpha
        self.compose_opaque_alpha = compose_opaque_alpha
        self.batch_keys = self.BATCH_KEYS + (("trimap",) if self.weights["alpha_unknown"] else ())

    def updates(self, batch: dict, step: int, epoch: int) -> Iterator[Update]:
        self._require(batch, self.batch_keys)
        raw = self._raw_matte(self.trained["generator"], batch)
        truth = raw.truth(*(batch[k] for k in self.TRUTH_KEYS))  # alpha, F, clean B in network space
        terms = self._matte_terms(raw.alpha, raw.foreground, raw.image, truth, batch["alpha"])
        terms.update(self._extra_terms(raw.alpha, truth[0], batch))
        if raw.coarse_alpha is not None:
            terms.update(self._coarse_terms(raw, batch))
        recomposite = from_network(composite(from_network(raw.alpha.detach()), raw.foreground.detach(), truth[2]))
        self._visuals = visuals_of(batch, raw, batch["alpha"], recomposite)
        yield Update("generator", terms)

    def _matte_terms(
        self,
        alpha_raw: torch.Tensor,
        fg_raw: torch.Tensor,
        image: torch.Tensor,
        truth: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        alpha: torch.Tensor,
        prefix: str = "",
    ) -> dict[str, LossTerm]:
        """The four terms of network-space predictions (``alpha_raw``, ``fg_raw``; ``image`` the network's input)
        against the network-space ``truth`` (alpha, foreground, clean background) of the same size; ``alpha`` is
        the true alpha in [0, 1] (it decides the foreground mask). Names and weights are the terms' with ``prefix``."""
        true_alpha, true_fg, clean_background = truth
        fg_mask = (alpha > self.foreground_mask_alpha).float()
        fg_for_composite = fg_raw
        if self.compose_opaque_alpha is not None:
            fg_for_composite = losses.replace_opaque_foreground(
                fg_raw, image, alpha_raw, alpha_threshold_raw(self.compose_opaque_alpha)
            )
        w = {term: self.weights[prefix + term] for term in self.TERMS}
        terms = {
            "alpha": LossTerm(losses.normalized_l1(alpha_raw, true_alpha), w["alpha"]),
            "alpha_gradient": LossTerm(losses.alpha_gradient_l1(alpha_raw, true_alpha), w["alpha_gradient"]),
            "foreground": LossTerm(losses.normalized_l1(fg_raw, true_fg, fg_mask), w["foreground"]),
            "composite": LossTerm(
                losses.compose_l1(image, alpha_raw, fg_for_composite, clean_background), w["composite"]
            ),
        }
        return {prefix + name: term for name, term in terms.items()}

    def _extra_terms(self, alpha_raw: torch.Tensor, true_alpha: torch.Tensor, batch: dict) -> dict[str, LossTerm]:
        """Our optional alpha terms (weight > 0 only) of the refined network-space alpha against the network-space
        ``true_alpha``: ``alpha_unknown`` (L1 on the trimap's unknown band) and ``alpha_laplacian`` (L1 of the
        Laplacian pyramids)."""
        terms = {}
        if self.weights["alpha_unknown"]:
            unknown = (batch["trimap"] == 128).float()
            terms["alpha_unknown"] = LossTerm(losses.normalized_l1(alpha_raw, true_alpha, unknown),
                                              self.weights["alpha_unknown"])
        if self.weights["alpha_laplacian"]:
            terms["alpha_laplacian"] = LossTerm(losses.laplacian_l1(alpha_raw, true_alpha),
                                                self.weights["alpha_laplacian"])
        return terms

    def _coarse_terms(self, raw: RawMatte, batch: dict) -> dict[str, LossTerm]:
        """``coarse_*`` terms of the base's outputs and the ``error`` term, at the base resolution."""
        truth = raw.coarse_truth(*(batch[k] for k in self.TRUTH_KEYS))
        (alpha,) = raw.at_base_resolution(batch["alpha"])
        terms = self._matte_terms(raw.coarse_alpha, raw.coarse_foreground, raw.coarse_image, truth, alpha, "coarse_")
        terms["error"] = LossTerm(losses.error_map_mse(raw.error, raw.coarse_alpha, truth[0]), self.weights["error"])
        return terms
