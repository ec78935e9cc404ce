from dataclasses import dataclass, field
from typing import Literal

import pytest

from arbiter_env.config import ConfigError, from_dict, load_yaml, save_yaml


@dataclass
class Inner:
    rate: float = 0.1
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer:
    name: str
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    seed: int | None = None


def test_nested_dataclasses_are_built_and_ints_become_floats():
    config = from_dict(Outer, {"name": "x", "sizes": [3, 4], "inner": {"rate": 1}})
    assert config == Outer(name="x", sizes=(3, 4), inner=Inner(rate=1.0))
    assert isinstance(config.inner.rate, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "colour": 1}, "colour"),
        ({"name": "x", "inner": {"rat": 1}}, "inner.rat"),
        ({"name": "x", "inner": {"rate": "fast"}}, "inner.rate"),
        ({"name": "x", "inner": {"mode": "c"}}, "inner.mode"),
        ({"name": "x", "sizes": [1, "two"]}, r"sizes\[1\]"),
        ({"name": "x", "seed": 1.5}, "seed"),
        ({"name": 3}, "name"),
        ({}, "name"),
    ],
)
def test_bad_keys_and_types_raise_an_error_naming_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_yaml_round_trip_with_overrides(tmp_path):
    file = tmp_path / "c.yaml"
    save_yaml(Outer(name="x"), file)
    loaded = load_yaml(Outer, file, overrides=["inner.rate=0.5", "seed=3"])
    assert loaded == Outer(name="x", inner=Inner(rate=0.5), seed=3)
    with pytest.raises(ConfigError, match="key=value"):
        load_yaml(Outer, file, overrides=["seed"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(Outer, tmp_path / "missing.yaml")


def test_a_nested_section_is_applied_over_the_fields_default_instance() -> None:
    import dataclasses as dc

    @dc.dataclass
    class Inner:
        a: int = 1
        b: int = 2

    @dc.dataclass
    class Outer:
        inner: Inner = dc.field(default_factory=lambda: Inner(b=20))

    # Keys the section leaves out keep the field's default (b=20), not the class's own (b=2).
    assert from_dict(Outer, {"inner": {"a": 5}}).inner == Inner(a=5, b=20)
    assert from_dict(Outer, {}).inner == Inner(a=1, b=20)
    with pytest.raises(ConfigError, match=r"inner\.c"):
        from_dict(Outer, {"inner": {"c": 1}})


def test_apply_values_sets_typed_values_by_dotted_key_without_parsing() -> None:
    from arbiter_env.config import apply_values

    data = {"env": {"task": "digits-mlp", "reward": {"cost": "none"}}}
    result = apply_values(
        data, {"env.num_intervals": 8, "env.reward": {"cost": "updates"}, "x": "1"}
    )
    assert result == {
        "env": {"task": "digits-mlp", "reward": {"cost": "updates"}, "num_intervals": 8},
        "x": "1",  # a string stays a string: nothing is parsed
    }
    assert data["env"] == {"task": "digits-mlp", "reward": {"cost": "none"}}  # not changed
