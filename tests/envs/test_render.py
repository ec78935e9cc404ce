import gymnasium as gym
import numpy as np
import pytest

import arbiter_env
from arbiter_env.envs.batch_size import BatchSizeEnv


def run(env, actions, seed=0):
    """Steps through ``actions`` and returns the render after reset and after each step."""
    env.reset(seed=seed)
    frames = [env.render()]
    for action in actions:
        env.step(action)
        frames.append(env.render())
    return frames


def test_ansi_render_gives_one_line_per_interval_so_far(tiny_task):
    env = BatchSizeEnv(tiny_task, render_mode="ansi")
    texts = run(env, [0, 4])
    assert [text.count("\n") for text in texts] == [1, 2, 3]
    last = texts[-1].splitlines()
    assert last[0].startswith("interval   0/4") and "reward" not in last[0]
    assert "batch     4" in last[1] and "batch    64" in last[2] and "reward" in last[2]


def test_rgb_array_render_is_an_image_that_changes_as_the_episode_goes_on(tiny_task):
    env = BatchSizeEnv(tiny_task, render_mode="rgb_array")
    frames = run(env, [0, 4])
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.shape == (480, 640, 3)
        assert frame.min() < 128 < frame.max()  # something is drawn on the white background
    assert not np.array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[1], frames[2])
    # Same episode, same picture: the frame depends on the episode only.
    np.testing.assert_array_equal(run(env, [0, 4])[-1], frames[-1])


def test_rendering_does_not_change_the_trajectory(tiny_task):
    def rollout(render_mode):
        env = BatchSizeEnv(tiny_task, render_mode=render_mode)
        observations = [env.reset(seed=1)[0]]
        for action in [0, 3, 1, 4]:
            observations.append(env.step(action)[0])
            env.render()
        return np.stack(observations)

    plain = rollout(None)
    np.testing.assert_array_equal(rollout("rgb_array"), plain)
    np.testing.assert_array_equal(rollout("ansi"), plain)


def test_unknown_render_mode_names_the_modes_there_are(tiny_task):
    with pytest.raises(ValueError, match="'ansi', 'rgb_array'"):
        BatchSizeEnv(tiny_task, render_mode="human")


def test_record_video_writes_a_video_of_an_episode(tiny_task, tmp_path):
    pytest.importorskip("moviepy")  # RecordVideo's encoder; not a dependency of the package
    arbiter_env.register_task("tiny-blobs-video", tiny_task, overwrite=True)
    env = gym.wrappers.RecordVideo(
        gym.make(arbiter_env.ENV_ID, task="tiny-blobs-video", render_mode="rgb_array"),
        str(tmp_path / "videos"),
        disable_logger=True,
    )
    env.reset(seed=0)
    terminated = False
    while not terminated:
        *_, terminated, _, _ = env.step(2)
    env.close()
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
