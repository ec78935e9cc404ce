"""The observation table in ``BatchSizeEnv``'s docstring agrees with the code that builds it."""

import re

import gymnasium as gym
import numpy as np

from arbiter_env.envs.batch_size import BatchSizeEnv
from arbiter_env.envs.observation import OBSERVATION_FIELDS, OBSERVATION_HIGH, OBSERVATION_LOW


def documented_rows() -> list[tuple[int, str, str]]:
    section = (BatchSizeEnv.__doc__ or "").split("## Observation Space")[1].split("## Rewards")[0]
    rows = []
    for line in section.splitlines():
        # Cells are separated by "|" not preceded by a backslash (the meanings write \\|G\\|).
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and cells[0].isdigit():
            rows.append((int(cells[0]), cells[1], cells[-1]))
    return rows


def test_docstring_lists_every_observation_entry_in_order_with_its_bounds():
    rows = documented_rows()
    assert [index for index, _, _ in rows] == list(range(len(OBSERVATION_FIELDS)))
    assert [name for _, name, _ in rows] == [field.name for field in OBSERVATION_FIELDS]
    for (_, name, bounds), low, high in zip(rows, OBSERVATION_LOW, OBSERVATION_HIGH, strict=True):
        numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", bounds)]
        assert numbers == [low, high], name


def test_the_observation_space_has_the_documented_length():
    env = BatchSizeEnv("digits-mlp")
    assert env.observation_space.shape == (len(documented_rows()),)
    assert isinstance(env.observation_space, gym.spaces.Box)
    assert np.array_equal(env.observation_space.low, OBSERVATION_LOW)


def test_every_env_argument_is_documented_in_the_arguments_section() -> None:
    from arbiter_env.envs.batch_size import BatchSizeEnv, EnvConfig

    doc = BatchSizeEnv.__doc__ or ""
    arguments = doc[doc.index("## Arguments") : doc.index("## Version History")]
    documented = re.findall(r"^    \* ``(\w+)``:", arguments, flags=re.MULTILINE)
    assert documented == list(EnvConfig.field_names())
