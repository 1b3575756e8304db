"""klsim_llm: torch twins of the klsim objectives, KL estimators, tabular-LM oracles, the estimator audit
and a thin trainer for ``AutoModelForCausalLM`` models.

Importing this package needs torch (the ``llm`` extra).  The objectives are pure functions of tensors; they
are named in :mod:`klsim_llm.registry`, where each entry names its exact numpy twin in :mod:`klsim.sequence`.
"""

# ruff: noqa: I001
from klsim_llm.registry import (
    ADVANTAGES,
    DIVERGENCES,
    KL_ESTIMATORS,
    OBJECTIVES,
    PRESETS,
    Entry,
    get,
)
from klsim_llm.estimators import kl_term
from klsim_llm.divergences import divergence_loss, divergence_per_token
from klsim_llm.objectives import (
    advantages,
    bon_distill_loss,
    nash_mp_loss,
    occupancy_chi2_loss,
    pg_loss,
    pref_loss,
)
from klsim_llm.audit import kl_audit
from klsim_llm.config import (
    BoNDistillConfig,
    DPOConfig,
    FDPOConfig,
    NashMPConfig,
    OccupancyChi2Config,
    PGConfig,
    PPOConfig,
    TrainConfig,
    load_config,
)
from klsim_llm.references import REFERENCES
from klsim_llm.trainer import Trainer

__all__ = [
    "ADVANTAGES",
    "DIVERGENCES",
    "KL_ESTIMATORS",
    "OBJECTIVES",
    "PRESETS",
    "REFERENCES",
    "Entry",
    "get",
    "kl_term",
    "divergence_loss",
    "divergence_per_token",
    "advantages",
    "bon_distill_loss",
    "nash_mp_loss",
    "occupancy_chi2_loss",
    "pg_loss",
    "pref_loss",
    "kl_audit",
    "BoNDistillConfig",
    "DPOConfig",
    "FDPOConfig",
    "NashMPConfig",
    "OccupancyChi2Config",
    "PGConfig",
    "PPOConfig",
    "TrainConfig",
    "load_config",
    "Trainer",
]

__version__ = "0.1.0"
