"""The two training stages of Background Matting, as plug-ins of the one training loop (``engine.loop``).

* :class:`AdobeStage` (``adobe.py``): supervised training on composites with ground truth.
* :class:`RealStage` (``real.py``): self-supervised adversarial training on real captures, supervised by a frozen
  teacher, with a discriminator updated every ``discriminator_every`` steps.

``base.py`` holds what they share: :class:`LossTerm`, :class:`Update`, :class:`Networks` and :class:`Stage`.
"""
from bgmatting.engine.stages.adobe import AdobeStage
from bgmatting.engine.stages.base import MODEL_INPUTS, LossTerm, Networks, Stage, Update
from bgmatting.engine.stages.real import RealStage, SupervisionSchedule

__all__ = ["AdobeStage", "LossTerm", "MODEL_INPUTS", "Networks", "RealStage", "Stage", "SupervisionSchedule", "Update"]
