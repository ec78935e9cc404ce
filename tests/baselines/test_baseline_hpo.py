"""Static HPO: the search resumes from its SQLite storage after an interruption."""

import pytest
from optuna.trial import TrialState

from arbiter_env.baselines import FixedBatchSize, OptunaGP, OptunaTPE, RandomSearch
from arbiter_env.controllers import run_episode
from arbiter_env.envs.batch_size import BatchSizeEnv


class Interrupted(Exception):
    """Stands in for Ctrl-C or a killed job in the middle of a trial."""


@pytest.fixture
def env(tiny_task):
    return BatchSizeEnv(tiny_task)


# The GP sampler fits a Gaussian process at every proposal: seconds per trial, so it is slow.
@pytest.mark.parametrize(
    "cls", [RandomSearch, OptunaTPE, pytest.param(OptunaGP, marks=pytest.mark.slow)]
)
def test_search_resumes_after_an_interruption(env, tmp_path, monkeypatch, cls):
    calls: list[int] = []
    original = cls.evaluate_batch_size

    def interrupted_on_third(self, batch_size):
        calls.append(batch_size)
        if len(calls) == 3:
            raise Interrupted
        return original(self, batch_size)

    config = {"n_trials": 4, "run_dir": str(tmp_path), "n_startup_trials": 2}
    monkeypatch.setattr(cls, "evaluate_batch_size", interrupted_on_third)
    with pytest.raises(Interrupted):
        cls(env, **config).learn()
    monkeypatch.setattr(cls, "evaluate_batch_size", original)

    resumed = cls(env, **config)
    study = resumed.load_study()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]
    resumed.learn()
    study = resumed.load_study()
    # The two finished trials were kept; only the missing two ran (one episode each).
    assert resumed.episodes_run == 2
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 4
    assert states[2] == TrialState.FAIL
    best = min((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert resumed.best_batch_size == best.user_attrs["batch_size"]
    record = run_episode(env, resumed, seed=0)
    assert set(record.batch_sizes) == {best.user_attrs["batch_size"]}

    # A finished study is picked up without new trials, even by a fresh controller.
    again = cls(env, **config)
    again.learn()
    assert again.episodes_run == 0
    assert again.best_batch_size == resumed.best_batch_size


def test_each_trial_is_a_full_seeded_episode_scored_by_final_validation_loss(env, tmp_path):
    search = RandomSearch(env, n_trials=2, run_dir=str(tmp_path), search_seeds=(5, 6))
    search.learn()
    trial = search.load_study().trials[0]
    batch_size = trial.user_attrs["batch_size"]
    losses = [
        run_episode(env, FixedBatchSize(env, batch_size=batch_size), seed).final_val_loss
        for seed in (5, 6)
    ]
    assert trial.value == pytest.approx(sum(losses) / 2, rel=1e-12)
    assert search.episodes_run == 4


def test_resuming_a_different_search_space_raises(env, tmp_path, tiny_task):
    RandomSearch(env, n_trials=1, run_dir=str(tmp_path), study_name="s").learn()
    other = BatchSizeEnv(tiny_task.replace(batch_max=32))
    with pytest.raises(ValueError, match="another run_dir or study_name"):
        RandomSearch(other, n_trials=1, run_dir=str(tmp_path), study_name="s").learn()


def test_predict_before_learn_explains_what_to_do(env, tmp_path):
    search = OptunaTPE(env, run_dir=str(tmp_path))
    observation, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="learn"):
        search.predict(observation, episode_start=True)


def test_saved_search_loads_with_its_best_size_and_config(env, tmp_path):
    search = RandomSearch(env, n_trials=2, run_dir=str(tmp_path / "study"), search_seeds=(3,))
    search.learn()
    search.save(tmp_path / "model" / "search.json")
    loaded = RandomSearch.load(tmp_path / "model" / "search.json", env)
    assert loaded.config == search.config
    assert loaded.best_batch_size == search.best_batch_size
    observation, _ = env.reset(seed=0)
    action, _ = loaded.predict(observation, episode_start=True)
    assert env.decode(action) == search.best_batch_size
