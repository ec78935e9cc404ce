"""Batch-size baselines: schedules, adaptive rules and static HPO, as controllers of the env.

Installed as ``arbiter_env.baselines``. Every baseline is registered with
:func:`arbiter_env.controllers.register_controller` under the name below, with a factory
``(env, **config_kwargs)``; its config dataclass loads from ``configs/baselines/NAME.yaml`` with
:func:`arbiter_env.config.load_yaml`. See ``docs/baselines.md`` for formulas and citations.

| name                 | class               | config             |
|----------------------|---------------------|--------------------|
| fixed                | FixedBatchSize      | FixedConfig        |
| step                 | StepSchedule        | StepConfig         |
| smith                | SmithSchedule       | SmithConfig        |
| adabatch             | AdaBatch            | AdaBatchConfig     |
| linear-growth        | LinearGrowth        | GrowthConfig       |
| exponential-growth   | ExponentialGrowth   | GrowthConfig       |
| cabs                 | CABS                | CABSConfig         |
| noise-scale          | NoiseScale          | NoiseScaleConfig   |
| norm-test            | NormTest            | NormTestConfig     |
| simigrad             | SimiGrad            | SimiGradConfig     |
| random-search        | RandomSearch        | HPOConfig          |
| optuna-tpe           | OptunaTPE           | HPOConfig          |
| optuna-gp            | OptunaGP            | HPOConfig          |
| batch-ramp           | BatchRamp           | RampConfig         |
| seesaw               | Seesaw              | SeesawConfig       |
| adascale             | AdaScale            | AdaScaleConfig     |
| goodput              | Goodput             | GoodputConfig      |
| cbs-warmup           | CBSWarmup           | CBSWarmupConfig    |

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

# The family of each baseline, for reports and plots.
_KINDS = {
    "fixed": "fixed",
    "step": "schedule",
    "smith": "schedule",
    "adabatch": "schedule",
    "linear-growth": "schedule",
    "exponential-growth": "schedule",
    "cabs": "adaptive",
    "noise-scale": "adaptive",
    "norm-test": "adaptive",
    "simigrad": "adaptive",
    "random-search": "hpo",
    "optuna-tpe": "hpo",
    "optuna-gp": "hpo",
    "batch-ramp": "schedule",
    "seesaw": "schedule",
    "adascale": "adaptive",
    "goodput": "adaptive",
    "cbs-warmup": "other",  # a reference like oracle-greedy (which h20 registers as "other")
}
# The env arguments a baseline is meant to run with (it checks them itself).
_ENV_DEFAULTS = {
    "adascale": {"lr_scaling": "adascale"},
    "goodput": {"lr_scaling": "adascale"},
}

for _name, _cls in BASELINES.items():
    register_controller(
        _name, _cls.factory, kind=_KINDS[_name], env_defaults=_ENV_DEFAULTS.get(_name)
    )

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
