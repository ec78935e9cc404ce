"""Batch-size baselines: schedules, adaptive rules and static HPO, as controllers of the env.

Installed as ``arbiter_env.baselines``. Every baseline is registered with
:func:`arbiter_env.controllers.register_controller` under its name in :data:`BASELINES`, with a
factory ``(env, **config_kwargs)`` and its class's ``kind``; its config dataclass (the class's
``Config``) loads from ``configs/baselines/NAME.yaml`` with :func:`arbiter_env.config.load_yaml`.
See ``docs/baselines.md`` for formulas and citations.

``adascale`` and ``goodput`` register ``lr_scaling="adascale"`` as their env default;
``cbs-warmup`` trains branches (copies) of the env and is a reference, like ``oracle-greedy``.
"""

from __future__ import annotations

from arbiter_env.baselines.adaptive import (
    CABS,
    CABSConfig,
    NoiseScale,
    NoiseScaleConfig,
    NormTest,
    NormTestConfig,
    SimiGrad,
    SimiGradConfig,
)
from arbiter_env.baselines.branched import CBSWarmup, CBSWarmupConfig
from arbiter_env.baselines.common import Baseline
from arbiter_env.baselines.efficiency import AdaScale, AdaScaleConfig, Goodput, GoodputConfig
from arbiter_env.baselines.hpo import HPOConfig, OptunaGP, OptunaTPE, RandomSearch, StaticHPO
from arbiter_env.baselines.schedules import (
    AdaBatch,
    AdaBatchConfig,
    BatchRamp,
    ExponentialGrowth,
    FixedBatchSize,
    FixedConfig,
    GrowthConfig,
    LinearGrowth,
    RampConfig,
    Seesaw,
    SeesawConfig,
    SmithConfig,
    SmithSchedule,
    StepConfig,
    StepSchedule,
)
from arbiter_env.controllers import register_controller

BASELINES: dict[str, type[Baseline]] = {
    "fixed": FixedBatchSize,
    "step": StepSchedule,
    "smith": SmithSchedule,
    "adabatch": AdaBatch,
    "linear-growth": LinearGrowth,
    "exponential-growth": ExponentialGrowth,
    "cabs": CABS,
    "noise-scale": NoiseScale,
    "norm-test": NormTest,
    "simigrad": SimiGrad,
    "random-search": RandomSearch,
    "optuna-tpe": OptunaTPE,
    "optuna-gp": OptunaGP,
    "batch-ramp": BatchRamp,
    "seesaw": Seesaw,
    "adascale": AdaScale,
    "goodput": Goodput,
    "cbs-warmup": CBSWarmup,
}
"""Registered name -> baseline class (its ``Config`` attribute is the config dataclass)."""

# The env arguments a baseline is meant to run with (it checks them itself).
_ENV_DEFAULTS = {
    "adascale": {"lr_scaling": "adascale"},
    "goodput": {"lr_scaling": "adascale"},
}

for _name, _cls in BASELINES.items():
    register_controller(_name, _cls.factory, kind=_cls.kind, env_defaults=_ENV_DEFAULTS.get(_name))

__all__ = [
    "BASELINES",
    "CABS",
    "AdaBatch",
    "AdaBatchConfig",
    "AdaScale",
    "AdaScaleConfig",
    "Baseline",
    "BatchRamp",
    "CABSConfig",
    "CBSWarmup",
    "CBSWarmupConfig",
    "ExponentialGrowth",
    "FixedBatchSize",
    "FixedConfig",
    "Goodput",
    "GoodputConfig",
    "GrowthConfig",
    "HPOConfig",
    "LinearGrowth",
    "NoiseScale",
    "NoiseScaleConfig",
    "NormTest",
    "NormTestConfig",
    "OptunaGP",
    "OptunaTPE",
    "RampConfig",
    "RandomSearch",
    "Seesaw",
    "SeesawConfig",
    "SimiGrad",
    "SimiGradConfig",
    "SmithConfig",
    "SmithSchedule",
    "StaticHPO",
    "StepConfig",
    "StepSchedule",
]
