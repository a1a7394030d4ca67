"""The self-supervised adversarial stage on real captures (paper Sec. 3.2; public code train_real_fixed.py)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch

from bgmatting import losses
from bgmatting.engine.adversarial import fake_backgrounds, horizontal_shifts, shifted_composite
from bgmatting.engine.distributed import unwrap
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


@dataclass(frozen=True)
class SupervisionSchedule:
    """lambda = ``weight`` * 0.5 ** (number of halvings so far), counted in epochs or in steps (``unit``).

    Halvings happen at ``first_halving``, ``first_halving + every``, ... (epochs or steps); ``every <= 0``
    keeps lambda constant. The paper halves every 2 epochs (first at epoch 2); the public code halves after
    epochs 0, 2, 4, ... (first at epoch 1). A short run counts in steps, so that its schedule does not
    depend on how many samples an epoch happens to hold.
    """

    weight: float = 0.05
    every: int = 2
    first_halving: int = 2
    unit: str = "epoch"

    def __post_init__(self) -> None:
        if self.unit not in ("epoch", "step"):
            raise ValueError(f"supervision unit must be 'epoch' or 'step', got {self.unit!r}")

    def __call__(self, epoch: int, step: int = 0) -> float:
        t = epoch if self.unit == "epoch" else step
        if self.every <= 0 or t < self.first_halving:
            return self.weight
        return self.weight * 0.5 ** (1 + (t - self.first_halving) // self.every)


class RealStage(Stage):
    """Self-supervised adversarial stage on real captures.

    Generator objective: ``gan`` * LSGAN(D(fake), 1) + lambda(epoch) * (``alpha`` L1(alpha, alpha~) +
    ``alpha_gradient`` L1(grad) + ``foreground`` L1(F, F~) + ``composite`` L1(I, alpha F + (1-alpha) B')),
    with (alpha~, F~) from the frozen ``teacher``. Paper weights: 1, 2, 4, 1, 1; public code: 1, 1, 0.5, 1, 1.
    The fake is the predicted subject (F := I where alpha > 0.975), shifted horizontally by a random offset,
    over another captured background of the batch or a target background. Every ``discriminator_every``-th
    step (k = 5) the discriminator minimises 0.5 (MSE(D(I), 1) + MSE(D(fake), 0)).

    The teacher (with or without a refiner) gives its pseudo-labels at the full resolution of the batch. A
    refining student is scored there on its refined outputs, and its fake (what the discriminator sees) is
    made of them; its base's coarse outputs get the same four terms against the pseudo-labels brought to
    the base resolution (``coarse_*``) and ``error`` regresses its error map on |coarse alpha - alpha~|,
    all under lambda(epoch) as well.

    Options reproducing the public code: ``detach_fake_for_generator=True`` (its GAN term gives the generator
    no gradient), ``foreground_mask_alpha=0.01`` (F loss only where alpha~ > 0.01),
    ``composite_mask_segmentation=0.95`` (compositional loss only where S > 0.95),
    ``SupervisionSchedule(first_halving=1)``. Student initialisation from the teacher is decided by whoever
    builds the generator (the top-level ``init``, see ``engine.model_start``). ``networks.model`` (the student,
    possibly DDP-wrapped) and ``networks.teacher`` are :class:`~bgmatting.models.MattingModel` s;
    ``precision`` is the layout of the discriminator's input. ``losses``: weights by term name; a term missing from a given dict has weight 0
    (defaults: the paper's, the coarse terms as the full-resolution ones, error 1).
    """

    name = "real"
    TERMS = ("gan", "alpha", "alpha_gradient", "foreground", "composite")
    SUPERVISED = ("alpha", "alpha_gradient", "foreground", "composite")
    REFINE_TERMS = tuple(f"coarse_{t}" for t in SUPERVISED) + ("error",)
    BATCH_KEYS = ("image", "background", "segmentation", "motion", "target_background")

    def __init__(
        self,
        networks: Networks,
        precision: Precision | None = None,
        losses: Mapping[str, float] | None = None,
        supervision: SupervisionSchedule = SupervisionSchedule(),
        discriminator_every: int = 5,
        detach_fake_for_generator: bool = False,
        foreground_mask_alpha: float | None = None,
        composite_mask_segmentation: float | None = None,
        fake_target_probability: float = 0.5,
        shift_margin: int = 10,
        shift_segmentation_threshold: float = 0.1,
        seed: int = 0,
        name: str | None = None,
    ):
        super().__init__(networks, precision, name, required=("discriminator", "teacher"))
        defaults = {"gan": 1.0, "alpha": 2.0, "alpha_gradient": 4.0, "foreground": 1.0, "composite": 1.0}
        defaults.update({f"coarse_{t}": defaults[t] for t in self.SUPERVISED}, error=1.0)
        self.weights = check_weights(defaults if losses is None else losses, self.TERMS + self.REFINE_TERMS, self.name)
        if discriminator_every < 1:
            raise ValueError("discriminator_every must be >= 1")
        self.teacher = networks.teacher.eval().requires_grad_(False)
        self.supervision = supervision
        self.discriminator_every = discriminator_every
        self.detach_fake_for_generator = detach_fake_for_generator
        self.foreground_mask_alpha = foreground_mask_alpha
        self.composite_mask_segmentation = composite_mask_segmentation
        self.fake_target_probability = fake_target_probability
        self.shift_margin = shift_margin
        self.shift_segmentation_threshold = shift_segmentation_threshold
        self.rng = torch.Generator().manual_seed(seed)
        self._last_lambda: float | None = None

    def scalars(self, epoch: int) -> dict[str, float]:
        """The supervision weight of the last update (before any: lambda at the start of ``epoch``)."""
        return {"supervision_weight": self._last_lambda if self._last_lambda is not None else self.supervision(epoch)}

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "rng" in state:
            self.rng.set_state(state["rng"].cpu())

    def train(self, mode: bool = True) -> None:
        """The teacher stays in eval mode whatever the loop does with the trained networks."""
        self.teacher.eval()

    def updates(self, batch: dict, step: int, epoch: int) -> Iterator[Update]:
        self._require(batch, self.BATCH_KEYS)
        with torch.no_grad():
            teacher = self._raw_matte(self.teacher, batch)
        student = self._raw_matte(self.trained["generator"], batch)
        alpha_raw, fg_raw, image = student.alpha, student.foreground, student.image
        background, target_background = student.truth(batch["background"], batch["target_background"])

        lam = self._last_lambda = self.supervision(epoch, step)
        terms = self._supervised_terms(
            alpha_raw, fg_raw, image, teacher.alpha, teacher.foreground, background, batch["segmentation"], lam
        )
        if student.coarse_alpha is not None:
            terms.update(self._coarse_terms(student, teacher, background, batch["segmentation"], lam))

        fake = self._fake_images(batch["segmentation"], image, alpha_raw, fg_raw, background, target_background)
        discriminator = unwrap(self.trained["discriminator"])
        discriminator.requires_grad_(False)  # the generator's objective must not build D's weight gradients
        try:
            fake_for_generator = fake.detach() if self.detach_fake_for_generator else fake
            score = discriminator(self._prepare(fake_for_generator))
            terms["gan"] = LossTerm(losses.lsgan_loss(score, True), self.weights["gan"])
        finally:
            discriminator.requires_grad_(True)
        self._visuals = visuals_of(batch, student, from_network(teacher.alpha), from_network(fake))
        yield Update("generator", terms)

        if step % self.discriminator_every == 0:
            yield self._discriminator_update(image, fake.detach())

    def _supervised_terms(
        self,
        alpha_raw: torch.Tensor,
        fg_raw: torch.Tensor,
        image: torch.Tensor,
        teacher_alpha: torch.Tensor,
        teacher_fg: torch.Tensor,
        background: torch.Tensor,
        segmentation: torch.Tensor,
        lam: float,
        prefix: str = "",
    ) -> dict[str, LossTerm]:
        """The four teacher terms of network-space predictions against the teacher's (same size; ``background``
        B' in network space, ``segmentation`` S in [0, 1]); names and weights are the terms' with ``prefix``."""
        w = {term: lam * self.weights[prefix + term] for term in self.SUPERVISED}
        fg_mask = None
        if self.foreground_mask_alpha is not None:
            fg_mask = (teacher_alpha > alpha_threshold_raw(self.foreground_mask_alpha)).float()
        composite_mask = None
        if self.composite_mask_segmentation is not None:
            composite_mask = (segmentation > self.composite_mask_segmentation).float()
        terms = {
            "alpha": LossTerm(losses.normalized_l1(alpha_raw, teacher_alpha), w["alpha"]),
            "alpha_gradient": LossTerm(losses.alpha_gradient_l1(alpha_raw, teacher_alpha), w["alpha_gradient"]),
            "foreground": LossTerm(losses.normalized_l1(fg_raw, teacher_fg, fg_mask), w["foreground"]),
            "composite": LossTerm(
                losses.compose_l1(image, alpha_raw, fg_raw, background, composite_mask), w["composite"]
            ),
        }
        return {prefix + name: term for name, term in terms.items()}

    def _coarse_terms(
        self, student: RawMatte, teacher: RawMatte, background: torch.Tensor, segmentation: torch.Tensor, lam: float
    ) -> dict[str, LossTerm]:
        """``coarse_*`` and ``error`` terms of a refining student's base against the teacher's pseudo-labels
        brought to the base resolution."""
        teacher_alpha, teacher_fg, background, segmentation = student.at_base_resolution(
            teacher.alpha, teacher.foreground, background, segmentation)
        terms = self._supervised_terms(
            student.coarse_alpha, student.coarse_foreground, student.coarse_image, teacher_alpha, teacher_fg,
            background, segmentation, lam, "coarse_",
        )
        error = losses.error_map_mse(student.error, student.coarse_alpha, teacher_alpha)
        terms["error"] = LossTerm(error, lam * self.weights["error"])
        return terms

    def _discriminator_update(self, image: torch.Tensor, fake: torch.Tensor) -> Update:
        """D scores real images and fakes in one batch; LSGAN loss (its real and fake parts are logged too)."""
        scores = losses.score_maps(self.trained["discriminator"](self._prepare(torch.cat([image, fake], dim=0))))
        count = image.shape[0]
        loss = losses.discriminator_lsgan_loss([s[:count] for s in scores], [s[count:] for s in scores])
        return Update(
            "discriminator",
            {"discriminator": LossTerm(loss.total, 1.0)},
            extra={"discriminator_real": float(loss.real.detach()), "discriminator_fake": float(loss.fake.detach())},
        )

    def _fake_images(self, segmentation: torch.Tensor, image: torch.Tensor, alpha_raw: torch.Tensor,
                     fg_raw: torch.Tensor, background: torch.Tensor, target_background: torch.Tensor) -> torch.Tensor:
        """Shifted composites of the predicted subject over B' or a target background (all network space,
        differentiable in alpha and F); ``segmentation`` S in [0, 1] places the shifts."""
        subject = losses.replace_opaque_foreground(fg_raw, image, alpha_raw, alpha_threshold_raw(0.975))
        shifts = horizontal_shifts(segmentation.detach().cpu(), self.rng, self.shift_margin,
                                   self.shift_segmentation_threshold)
        backgrounds = fake_backgrounds(background, target_background, self.rng, self.fake_target_probability)
        return shifted_composite(alpha_raw, subject, backgrounds, shifts)
