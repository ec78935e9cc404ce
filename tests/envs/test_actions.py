import numpy as np
import pytest

from arbiter_env.envs.actions import DOUBLE, HALVE, KEEP, ActionEncoding, geometric_ladder


def test_default_ladder_has_one_rung_per_doubling():
    assert geometric_ladder(8, 512).tolist() == [8, 16, 32, 64, 128, 256, 512]
    assert geometric_ladder(10, 1000, size=3).tolist() == [10, 100, 1000]


@pytest.mark.parametrize("name", ["discrete", "continuous", "relative"])
def test_encode_then_decode_reaches_every_ladder_size(name):
    encoding = ActionEncoding(name, 8, 512)
    for target in encoding.ladder:
        current = 128
        for _ in range(8):  # relative needs several halvings or doublings
            current = encoding.decode(encoding.encode(int(target), current), current)
        assert current == target


def test_continuous_decode_maps_the_bounds_to_the_ladder_ends():
    encoding = ActionEncoding("continuous", 8, 512)
    assert encoding.decode(np.array([-1.0], dtype=np.float32), 128) == 8
    assert encoding.decode(np.array([1.0], dtype=np.float32), 128) == 512
    assert encoding.decode(np.array([0.0], dtype=np.float32), 128) == 64


def test_relative_actions_halve_keep_double_and_clip():
    encoding = ActionEncoding("relative", 8, 512)
    assert [encoding.decode(a, 64) for a in (HALVE, KEEP, DOUBLE)] == [32, 64, 128]
    assert encoding.decode(DOUBLE, 512) == 512 and encoding.decode(HALVE, 8) == 8


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("discrete", 7),
        ("discrete", -1),
        ("discrete", "3"),
        ("continuous", np.array([1.5])),
        ("relative", 3),
    ],
)
def test_out_of_space_action_raises_value_error_naming_space_and_action(name, action):
    encoding = ActionEncoding(name, 8, 512)
    with pytest.raises(ValueError, match="outside the action space") as error:
        encoding.decode(action, 64)
    assert str(encoding.space) in str(error.value)


def test_unknown_encoding_is_rejected():
    with pytest.raises(ValueError, match="action_encoding"):
        ActionEncoding("binary", 8, 512)
