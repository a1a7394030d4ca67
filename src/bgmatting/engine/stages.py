"""The two training stages of Background Matting, as plug-ins of the one training loop.

A stage owns its networks and turns a batch into a sequence of :class:`Update` s: named, weighted loss
terms and the optimiser that minimises their sum. The loop (``engine.loop``) runs the updates in order
(backward, clipping, optimiser step, logging, NaN checks), so nothing about optimisation lives here.

* :class:`AdobeStage`: supervised training on composites with ground truth.
* :class:`RealStage`: self-supervised adversarial training on real captures, supervised by a frozen
  teacher (an Adobe-stage generator), with a discriminator updated every ``discriminator_every`` steps.

Batches hold tensors in [0, 1] (see the sample dicts in the data package). The trained network and the
teacher are :class:`bgmatting.models.MattingModel` s, called with ``raw=True`` for their network-space
outputs; the losses work in network space [-1, 1] (:mod:`bgmatting.losses`), so the targets go there with
:func:`bgmatting.space.to_network`. Loss weights are config values; the defaults below are the paper's.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from bgmatting import losses
from bgmatting.data.compositing import composite
from bgmatting.engine.adversarial import fake_backgrounds, horizontal_shifts, shifted_composite
from bgmatting.engine.distributed import unwrap
from bgmatting.models import RawMatte, to_base_resolution
from bgmatting.models.blocks import resize_bilinear
from bgmatting.runtime import Precision
from bgmatting.space import from_network, to_network

#: Batch keys of the matting model's inputs, in its argument order (all in [0, 1]).
MODEL_INPUTS = ("image", "background", "segmentation", "motion")


@dataclass
class LossTerm:
    """One named term of an objective: ``weight * value`` enters the sum."""

    value: torch.Tensor
    weight: float = 1.0


@dataclass
class Update:
    """An optimiser step the loop should take: minimise the weighted sum of ``terms`` with ``optimizer``.

    ``extra`` holds scalars to log that are not part of the objective (e.g. the discriminator's real and fake parts).
    """

    optimizer: str
    terms: dict[str, LossTerm]
    extra: dict[str, float] = field(default_factory=dict)

    def total(self) -> torch.Tensor:
        active = [t.weight * t.value for t in self.terms.values() if t.weight != 0]
        if not active:
            raise ValueError(f"update of {self.optimizer!r} has no term with a non-zero weight")
        return torch.stack([a.float() for a in active]).sum()


def _alpha_threshold_raw(alpha_threshold: float) -> float:
    """An alpha threshold given in [0, 1] expressed in network space [-1, 1]."""
    return 2.0 * float(alpha_threshold) - 1.0


def _check_weights(weights: Mapping[str, float], allowed: tuple[str, ...], stage: str) -> dict[str, float]:
    unknown = sorted(set(weights) - set(allowed))
    if unknown:
        raise ValueError(f"stage {stage}: unknown loss term(s) {unknown}; known terms: {list(allowed)}")
    return {name: float(weights.get(name, 0.0)) for name in allowed}


class Stage:
    """Base class: holds ``networks`` (trained, by name), a precision, and the last batch's visuals.

    ``networks["generator"]`` is a :class:`bgmatting.models.MattingModel` (possibly DDP-wrapped or compiled),
    which carries its own precision; ``precision`` is the layout of the other networks' inputs (the
    discriminator's).
    """

    name = "stage"

    def __init__(self, networks: dict[str, nn.Module], precision: Precision | None = None):
        self.networks = networks
        self.precision = precision
        self._visuals: dict[str, torch.Tensor] = {}

    # -- hooks for the loop
    def updates(self, batch: dict, step: int, epoch: int) -> Iterator[Update]:
        raise NotImplementedError

    def train(self, mode: bool = True) -> None:
        """Called by the loop after it set the trained networks' mode (frozen helpers stay in eval)."""

    def scalars(self, epoch: int) -> dict[str, float]:
        """Stage-specific values to log (e.g. the current supervision weight)."""
        return {}

    def visuals(self) -> dict[str, torch.Tensor]:
        """Images of the last training batch (B x C x H x W in [0, 1]) for the TensorBoard grid."""
        return self._visuals

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # -- helpers
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return self.precision.prepare_input(x) if self.precision is not None else x

    @staticmethod
    def _raw_matte(model: nn.Module, batch: dict) -> RawMatte:
        """``model``'s network-space outputs for the batch's inputs (float32, see :class:`RawMatte`)."""
        return model(*(batch[key] for key in MODEL_INPUTS), raw=True)

    @staticmethod
    def _require(batch: dict, keys: tuple[str, ...], stage: str) -> None:
        missing = [k for k in keys if k not in batch]
        if missing:
            raise KeyError(f"stage {stage} needs batch keys {missing}; the batch has {sorted(batch)}")


class AdobeStage(Stage):
    """Supervised stage: L1(alpha) + L1(grad alpha) + 2 L1(F, alpha>0) + L1(I, alpha F + (1-alpha) B).

    The network sees the perturbed captured background ``background`` while the compositional loss uses
    the clean ``background_clean`` the image was made with (paper and public code).

    With a refining model (a :class:`~bgmatting.models.MattingModel` with a refiner) the four terms score the
    refined full-resolution outputs, and the same four score the base's coarse outputs against the ground
    truth brought to the base resolution (``coarse_*``, :func:`bgmatting.models.to_base_resolution`), plus
    ``error``: the MSE of the predicted error map against |coarse alpha - true alpha| at the base resolution
    (BackgroundMattingV2 scores both outputs alike and regresses the error map; the compositional terms are
    the paper's). A plain model gets exactly the four terms.

    Args:
        generator: the :class:`~bgmatting.models.MattingModel` to train (possibly DDP-wrapped).
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
    """

    name = "adobe"
    TERMS = ("alpha", "alpha_gradient", "foreground", "composite")
    REFINE_TERMS = tuple(f"coarse_{t}" for t in TERMS) + ("error",)
    EXTRA_TERMS = ("alpha_unknown", "alpha_laplacian")
    BATCH_KEYS = ("image", "background", "background_clean", "segmentation", "motion", "alpha", "foreground")
    TRUTH_KEYS = ("alpha", "foreground", "background_clean")

    def __init__(
        self,
        generator: nn.Module,
        precision: Precision | None = None,
        losses: Mapping[str, float] | None = None,
        foreground_mask_alpha: float = 0.0,
        compose_opaque_alpha: float | None = 0.975,
    ):
        super().__init__({"generator": generator}, precision)
        defaults = {"alpha": 1.0, "alpha_gradient": 1.0, "foreground": 2.0, "composite": 1.0}
        defaults.update({f"coarse_{t}": w for t, w in defaults.items()}, error=1.0)
        allowed = self.TERMS + self.REFINE_TERMS + self.EXTRA_TERMS
        self.weights = _check_weights(defaults if losses is None else losses, allowed, self.name)
        self.foreground_mask_alpha = foreground_mask_alpha
        self.compose_opaque_alpha = compose_opaque_alpha
        self.batch_keys = self.BATCH_KEYS + (("trimap",) if self.weights["alpha_unknown"] else ())

    def updates(self, batch: dict, step: int, epoch: int) -> Iterator[Update]:
        self._require(batch, self.batch_keys, self.name)
        raw = self._raw_matte(self.networks["generator"], batch)
        terms = self._matte_terms(raw.alpha, raw.foreground, raw.image, *(batch[k] for k in self.TRUTH_KEYS))
        terms.update(self._extra_terms(raw.alpha, batch))
        if raw.coarse_alpha is not None:
            terms.update(self._coarse_terms(raw, batch))
        clean_background = to_network(batch["background_clean"])
        recomposite = from_network(composite(from_network(raw.alpha.detach()), raw.foreground.detach(), clean_background))
        self._visuals = _visuals(batch, raw, batch["alpha"], recomposite)
        yield Update("generator", terms)

    def _matte_terms(
        self,
        alpha_raw: torch.Tensor,
        fg_raw: torch.Tensor,
        image: torch.Tensor,
        alpha: torch.Tensor,
        foreground: torch.Tensor,
        background: torch.Tensor,
        prefix: str = "",
    ) -> dict[str, LossTerm]:
        """The four terms of network-space predictions (``alpha_raw``, ``fg_raw``; ``image`` the network's input)
        against the image-space truth ``alpha``, ``foreground`` and clean ``background`` of the same size;
        the names and weights are the terms' with ``prefix``."""
        true_alpha = to_network(alpha)
        true_fg = to_network(foreground)
        clean_background = to_network(background)
        fg_mask = (alpha > self.foreground_mask_alpha).float()
        fg_for_composite = fg_raw
        if self.compose_opaque_alpha is not None:
            fg_for_composite = losses.replace_opaque_foreground(
                fg_raw, image, alpha_raw, _alpha_threshold_raw(self.compose_opaque_alpha)
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

    def _extra_terms(self, alpha_raw: torch.Tensor, batch: dict) -> dict[str, LossTerm]:
        """Our optional alpha terms (weight > 0 only) of the refined network-space alpha: ``alpha_unknown`` (L1 on
        the trimap's unknown band) and ``alpha_laplacian`` (L1 of the Laplacian pyramids)."""
        true_alpha, terms = to_network(batch["alpha"]), {}
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
        size = raw.coarse_alpha.shape[-2:]
        alpha, foreground, background = (to_base_resolution(batch[k], size) for k in self.TRUTH_KEYS)
        terms = self._matte_terms(
            raw.coarse_alpha, raw.coarse_foreground, raw.coarse_image, alpha, foreground, background, "coarse_"
        )
        error = losses.error_map_mse(raw.error, raw.coarse_alpha, to_network(alpha))
        terms["error"] = LossTerm(error, self.weights["error"])
        return terms


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
    builds the generator (see ``engine.build``). ``generator`` and ``teacher`` are
    :class:`~bgmatting.models.MattingModel` s (the student possibly DDP-wrapped); ``precision`` is the layout of
    the discriminator's input. ``losses``: weights by term name; a term missing from a given dict has weight 0
    (defaults: the paper's, the coarse terms as the full-resolution ones, error 1).
    """

    name = "real"
    TERMS = ("gan", "alpha", "alpha_gradient", "foreground", "composite")
    SUPERVISED = ("alpha", "alpha_gradient", "foreground", "composite")
    REFINE_TERMS = tuple(f"coarse_{t}" for t in SUPERVISED) + ("error",)
    BATCH_KEYS = ("image", "background", "segmentation", "motion", "target_background")

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        teacher: nn.Module,
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
    ):
        super().__init__({"generator": generator, "discriminator": discriminator}, precision)
        defaults = {"gan": 1.0, "alpha": 2.0, "alpha_gradient": 4.0, "foreground": 1.0, "composite": 1.0}
        defaults.update({f"coarse_{t}": defaults[t] for t in self.SUPERVISED}, error=1.0)
        self.weights = _check_weights(defaults if losses is None else losses, self.TERMS + self.REFINE_TERMS, self.name)
        if discriminator_every < 1:
            raise ValueError("discriminator_every must be >= 1")
        self.teacher = teacher.eval().requires_grad_(False)
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
        self._require(batch, self.BATCH_KEYS, self.name)
        background = to_network(batch["background"])
        with torch.no_grad():
            teacher = self._raw_matte(self.teacher, batch)
        student = self._raw_matte(self.networks["generator"], batch)
        alpha_raw, fg_raw, image = student.alpha, student.foreground, student.image

        lam = self._last_lambda = self.supervision(epoch, step)
        terms = self._supervised_terms(
            alpha_raw, fg_raw, image, teacher.alpha, teacher.foreground, background, batch["segmentation"], lam
        )
        if student.coarse_alpha is not None:
            terms.update(self._coarse_terms(student, teacher, background, batch["segmentation"], lam))

        fake = self._fake_images(batch, image, alpha_raw, fg_raw)
        discriminator = unwrap(self.networks["discriminator"])
        discriminator.requires_grad_(False)  # the generator's objective must not build D's weight gradients
        try:
            fake_for_generator = fake.detach() if self.detach_fake_for_generator else fake
            score = discriminator(self._prepare(fake_for_generator))
            terms["gan"] = LossTerm(losses.lsgan_loss(score, True), self.weights["gan"])
        finally:
            discriminator.requires_grad_(True)
        self._visuals = _visuals(batch, student, from_network(teacher.alpha), from_network(fake))
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
            fg_mask = (teacher_alpha > _alpha_threshold_raw(self.foreground_mask_alpha)).float()
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
        size = student.coarse_alpha.shape[-2:]
        teacher_alpha, teacher_fg, background, segmentation = (
            to_base_resolution(x, size) for x in (teacher.alpha, teacher.foreground, background, segmentation)
        )
        terms = self._supervised_terms(
            student.coarse_alpha, student.coarse_foreground, student.coarse_image, teacher_alpha, teacher_fg,
            background, segmentation, lam, "coarse_",
        )
        error = losses.error_map_mse(student.error, student.coarse_alpha, teacher_alpha)
        terms["error"] = LossTerm(error, lam * self.weights["error"])
        return terms

    def _discriminator_update(self, image: torch.Tensor, fake: torch.Tensor) -> Update:
        """D scores real images and fakes in one batch; LSGAN loss (its real and fake parts are logged too)."""
        scores = losses.score_maps(self.networks["discriminator"](self._prepare(torch.cat([image, fake], dim=0))))
        count = image.shape[0]
        loss = losses.discriminator_lsgan_loss([s[:count] for s in scores], [s[count:] for s in scores])
        return Update(
            "discriminator",
            {"discriminator": LossTerm(loss.total, 1.0)},
            extra={"discriminator_real": float(loss.real.detach()), "discriminator_fake": float(loss.fake.detach())},
        )

    def _fake_images(self, batch: dict, image: torch.Tensor, alpha_raw: torch.Tensor, fg_raw: torch.Tensor) -> torch.Tensor:
        """Shifted composites of the predicted subject (network space, differentiable in alpha and F)."""
        subject = losses.replace_opaque_foreground(fg_raw, image, alpha_raw, _alpha_threshold_raw(0.975))
        shifts = horizontal_shifts(
            batch["segmentation"].detach().cpu(), self.rng, self.shift_margin, self.shift_segmentation_threshold
        )
        backgrounds = fake_backgrounds(
            to_network(batch["background"]), to_network(batch["target_background"]), self.rng, self.fake_target_probability
        )
        return shifted_composite(alpha_raw, subject, backgrounds, shifts)


def _visuals(batch: dict, raw: RawMatte, reference_alpha: torch.Tensor, composite: torch.Tensor) -> dict[str, torch.Tensor]:
    """First samples of the batch for the image grid, all B x C x H x W in [0, 1].

    ``raw``: the trained model's outputs; ``reference_alpha``: true alpha (Adobe) or the teacher's (real), in
    [0, 1]; ``composite``: a composite of the prediction in [0, 1] (over the clean background, or the real
    stage's shifted fake). A refining model adds its error map (resized to the frame).
    """
    n = min(4, raw.alpha.shape[0])
    alpha = from_network(raw.alpha[:n].detach()).clamp(0, 1)
    fg = from_network(raw.foreground[:n].detach()).clamp(0, 1)
    visuals = {
        "image": batch["image"][:n],
        "captured_background": batch["background"][:n],
        "segmentation": batch["segmentation"][:n],
        "motion": batch["motion"][:n, :1],
        "alpha_pred": alpha,
        "alpha_reference": reference_alpha[:n].detach().clamp(0, 1),
        "foreground_pred": fg * alpha,
        "composite_pred": composite[:n].detach().clamp(0, 1),
    }
    if raw.error is not None:
        visuals["error_pred"] = resize_bilinear(raw.error[:n].detach(), tuple(alpha.shape[-2:])).clamp(0, 1)
    return {k: v.detach().float() for k, v in visuals.items()}
