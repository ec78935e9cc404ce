"""Weights & Biases plumbing shared by every run: credentials, offline mode, names and sections.

* :func:`wandb_api_key_configured` tells whether the user has logged in, the way wandb itself
  looks (environment, the netrc entry for wandb's configured host, wandb's settings files),
  without contacting a server.
* :func:`prepare_wandb` must run before ``wandb.init``: it sets the mode *process-wide*, not only
  for the run. Passing ``mode="offline"`` to ``wandb.init`` alone is not enough: wandb 0.31's
  process-wide telemetry reads the global settings, where the mode is still the default, and
  looks up and contacts wandb's server when, for example, a ``wandb.Table`` is logged.
* :func:`wandb_key` maps an interval record's field to a dashboard section (``val/loss``,
  ``grad_stats/noise_scale``, ...); :data:`BOOKKEEPING_KEYS` are kept out of charts.
"""

from __future__ import annotations

import hashlib
import netrc
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

WandbMode = Literal["disabled", "offline", "online"]

# Hosts that wandb 0.31 and earlier versions write netrc entries for when no server is set:
# 0.31 logs in to CoreWeave's Forge front end, older versions to api.wandb.ai.
_DEFAULT_HOSTS = ("api.forge.coreweave.com", "api.wandb.ai")


def wandb_base_url() -> str | None:
    """The W&B server wandb would use: ``WANDB_BASE_URL``, its settings files, or its default.

    Reads wandb's own settings (environment and settings files) without starting anything;
    ``None`` when wandb is not importable.
    """
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"]
    try:
        from wandb.sdk import wandb_setup

        return str(wandb_setup.singleton().settings.base_url)
    except Exception:  # broad on purpose (an older or changed wandb): use the defaults
        return None


def wandb_api_key_configured() -> bool:
    """Whether W&B credentials are available, as ``wandb login`` leaves them.

    ``WANDB_API_KEY`` or ``WANDB_IDENTITY_TOKEN_FILE`` in the environment, or a netrc entry with
    a password for the configured host (see :func:`wandb_base_url`) or, when no host is
    configured, for one of the hosts that wandb versions log in to by default. Never contacts a
    server.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    base_url = wandb_base_url()
    hosts = [urlsplit(base_url).hostname] if base_url else []
    if not os.environ.get("WANDB_BASE_URL"):
        hosts += _DEFAULT_HOSTS
    path = _netrc_path()
    try:
        entries = netrc.netrc(str(path))
    except (OSError, netrc.NetrcParseError):
        return False
    for host in dict.fromkeys(h for h in hosts if h):
        entry = entries.authenticators(host)
        if entry and entry[2]:
            return True
    return False


def _netrc_path() -> Path:
    """The netrc file wandb reads: ``NETRC``, else ``~/.netrc``, else ``~/_netrc`` if present."""
    if os.environ.get("NETRC"):
        return Path(os.environ["NETRC"]).expanduser()
    unix = Path("~/.netrc").expanduser()
    windows = Path("~/_netrc").expanduser()
    return windows if not unix.exists() and windows.exists() else unix


def prepare_wandb(mode: WandbMode) -> None:
    """Sets wandb's mode for the whole process before a run starts.

    ``wandb.setup`` updates wandb's global settings, which its process-wide telemetry reads.
    In ``offline`` and ``disabled`` mode the telemetry is also switched off for the process, in
    case it was created before (by an earlier run in another mode): nothing then leaves the
    machine whatever ``WANDB_*`` variables are set. A later online run still works; only
    wandb's own usage analytics stay off in this process.
    """
    import wandb

    wandb.setup(wandb.Settings(mode=mode))
    if mode in ("offline", "disabled"):
        try:
            from wandb.analytics.opentelemetry import opentelemetry_proxy
        except ImportError:  # wandb without that telemetry
            return
        disable = getattr(opentelemetry_proxy, "disable", None)
        if disable is not None:
            disable()


def unique_tags(tags: Iterable[Any]) -> list[str]:
    """Non-empty tags as strings, each once, in first-seen order (W&B limits a tag to 64 chars)."""
    return list(dict.fromkeys(str(tag)[:64] for tag in tags if tag is not None and str(tag)))


def summary_run_id(*parts: Any) -> str:
    """A W&B run id fixed by ``parts`` (project, group, name...), so a rerun resumes that run."""
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", str(parts[-1]) if parts else "run")[:40].strip("-")
    return f"{name}-{digest}" if name else digest


def wandb_review_lines(wandb_folder: Path, runs: int, *, mode: str = "offline") -> list[str]:
    """What to type to browse a folder of W&B runs offline and to upload them all later."""
    if runs == 0:
        return []
    where = shlex.quote(str(wandb_folder))
    noun = "run" if runs == 1 else "runs"
    lines = [f"W&B: {runs} {mode} {noun} in {wandb_folder}"]
    lines.append(f"  browse them (no account, no network):  wandb leet {where}")
    if mode == "offline":
        lines.append(
            f"  upload them all (after wandb login):   wandb sync {where}   "
            f"(wandb sync --dry-run {where} lists them first)"
        )
    return lines


# --- dashboard sections -------------------------------------------------------------------------

BOOKKEEPING_KEYS = frozenset(
    {
        "env_index",
        "episode",
        "interval",
        "elapsed",
        "seed",
        "timesteps",
        "step",
        "family_instance",
        "complete",
        "intervals",
        # Constant within a run: the examples the gradient statistics came from.
        "probe_size",
        # SB3's Monitor: the episode's return, length and time, which episode/ already has.
        "episode.r",
        "episode.l",
        "episode.t",
    }
)
"""Fields that say where a record belongs, not how training went: kept in the local files and
the schedule table, never drawn as charts."""

_GRAD_STATS = (
    "grad_sq_norm",
    "trace_covariance",
    "noise_scale",
    "half_batch_cosine",
    "mean_grad_norm",
    "probe_size",
)
_INTERVAL_SECTIONS = {
    # The inner network's training loss. SB3 uses train/ for the agent's own losses
    # (train/loss is PPO's total loss), so the inner network's is in a section of its own.
    "train_loss": "inner/train_loss",
    "val_loss": "val/loss",
    "val_accuracy": "val/accuracy",
    "test_loss": "test/loss",
    "test_accuracy": "test/accuracy",
    "batch_size": "schedule/batch_size",
    "lr": "schedule/lr",
    "updates": "schedule/updates",
    "interval_updates": "schedule/interval_updates",
    "episode_samples": "schedule/episode_samples",
    "reward": "env/reward",
    "diverged": "env/diverged",
    # SB3 uses time/ for its own timings; the env's are env/.
    "wall_time": "env/interval_wall_time",
    "episode_wall_time": "env/episode_wall_time",
    "TimeLimit.truncated": "env/truncated",
    **{name: f"grad_stats/{name}" for name in _GRAD_STATS},
}


def wandb_key(key: str) -> str | None:
    """The dashboard name of an interval record's field; ``None`` for bookkeeping.

    Fields that already name a section (``train/...``) are kept; a flattened mapping of the
    ``info`` becomes a section of its own (``arbiter.alpha_0``, Arbiter's search diagnostics,
    becomes ``arbiter/alpha_0``); other unknown fields go to ``interval/``. ``samples`` is the
    x-axis and stays as it is.
    """
    if key in BOOKKEEPING_KEYS:
        return None
    if key == "samples" or "/" in key:
        return key
    if key in _INTERVAL_SECTIONS:
        return _INTERVAL_SECTIONS[key]
    head, dot, rest = key.partition(".")
    return f"{head}/{rest}" if dot and head and rest else f"interval/{key}"


def noise_scale_defined(record: Mapping[str, Any]) -> bool:
    """Whether the record's noise scale B_simple = tr(Σ)/|G|² was measurable.

    The |G|² estimator subtracts the noise term tr(Σ)/n (n: the examples the statistics came
    from, ``probe_size``) from the squared norm of the mean gradient; where |G|² is not above
    that term, it cannot be told from 0 (it is clamped at a tiny positive number), and
    B_simple is an artefact of the clamp (1e13 and more). Equivalently: B_simple < n. A record
    without the three numbers is taken as measurable.
    """
    values = [record.get(k) for k in ("grad_sq_norm", "trace_covariance", "probe_size")]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return True
    grad_sq, trace, examples = (float(v) for v in values)  # type: ignore[arg-type]
    return examples > 0 and grad_sq > trace / examples


def sectioned(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with its keys mapped by :func:`wandb_key`, bookkeeping dropped.

    The noise scale is left out of intervals where it was not measurable
    (:func:`noise_scale_defined`); the local files keep it.
    """
    out: dict[str, Any] = {}
    skip_noise_scale = not noise_scale_defined(record)
    for key, value in record.items():
        if key == "noise_scale" and skip_noise_scale:
            continue
        name = wandb_key(key)
        if name is not None:
            out[name] = value
    return out
