"""The algorithm table of ``arbiter_env.agents.sb3``: the one place that knows each algorithm."""

import ast
import inspect
import pickle
from pathlib import Path

import pytest
from gymnasium import spaces
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from arbiter_env.agents.sb3 import (
    ALGORITHM_SPECS,
    ALGORITHMS,
    HYPERPARAMS,
    ConfigError,
    PolicyConfig,
    algorithms_for,
    check_action_space,
)
from arbiter_env.agents.sb3.hyperparams import _LinearSchedule

PACKAGE = Path(__file__).resolve().parents[2] / "agents" / "sb3"


@pytest.mark.parametrize("algo", sorted(ALGORITHM_SPECS))
def test_each_record_agrees_with_its_sb3_class(algo):
    spec = ALGORITHM_SPECS[algo]
    assert ALGORITHMS[algo] is spec.sb3_class and HYPERPARAMS[algo] is spec.hyperparams
    assert spec.on_policy == issubclass(spec.sb3_class, OnPolicyAlgorithm)
    arguments = set(inspect.signature(spec.sb3_class.__init__).parameters)
    assert set(spec.hyperparams().to_kwargs()) <= arguments
    policy_arguments = set(inspect.signature(spec.sb3_class.policy_aliases["MlpPolicy"]).parameters)
    assert spec.ortho_init == ("ortho_init" in policy_arguments)
    assert spec.log_std_init == ("log_std_init" in policy_arguments)


def test_encodings_map_to_the_algorithms_that_can_act_in_them():
    assert algorithms_for("discrete") == ["ppo", "a2c", "dqn"]
    assert algorithms_for("relative") == ["ppo", "a2c", "dqn"]
    assert algorithms_for("continuous") == ["ppo", "a2c", "sac", "td3"]


def test_action_space_errors_name_the_algorithms_to_use_instead():
    with pytest.raises(ValueError) as dqn:
        check_action_space("dqn", spaces.Box(-1, 1, (1,)))
    assert str(dqn.value).endswith(
        "build the env with action_encoding='discrete' or 'relative', or use PPO, A2C, SAC or "
        "TD3 for action_encoding='continuous'."
    )
    with pytest.raises(ValueError) as sac:
        check_action_space("sac", spaces.Discrete(3))
    assert str(sac.value).startswith("SAC needs the continuous action space, got Discrete(3)")
    assert str(sac.value).endswith("or use PPO, A2C or DQN for the discrete encodings.")
    with pytest.raises(ValueError, match=r"Unknown algorithm 'ddpg'; choose one of \['a2c'"):
        check_action_space("ddpg", spaces.Discrete(3))


@pytest.mark.parametrize(
    ("policy", "algo", "message"),
    [
        (PolicyConfig(ortho_init=False), "sac", "ortho_init applies to PPO and A2C, not sac."),
        (
            PolicyConfig(log_std_init=0.0),
            "td3",
            "log_std_init applies to PPO, A2C and SAC, not td3",
        ),
        (
            PolicyConfig(net_arch={"pi": [8]}),
            "dqn",
            "DQN takes a list of layer sizes, not a mapping",
        ),
        (PolicyConfig(net_arch={"vf": [8]}), "td3", "keys for TD3 are ['pi', 'qf'], got ['vf']"),
    ],
)
def test_policy_keys_an_algorithm_cannot_use_are_errors_naming_who_can(policy, algo, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        policy.to_sb3(algo)


def test_checkpoints_from_the_single_module_still_find_their_pickled_schedule():
    # model.zip pickles the linear schedule by reference under the module's old path.
    assert pickle.loads(b"carbiter_env.agents.sb3\n_LinearSchedule\n.") is _LinearSchedule


def _algorithm_name_literals(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines where an algorithm name is compared against or used as a mapping key."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            operands = [key for key in node.keys if key is not None]
        else:
            continue
        for operand in operands:
            for leaf in ast.walk(operand):
                if isinstance(leaf, ast.Constant) and leaf.value in names:
                    lines.append(leaf.lineno)
    return lines


def test_no_module_but_the_table_branches_on_an_algorithm_name():
    names = set(ALGORITHM_SPECS)
    found = {
        path.name: lines
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name != "algorithms.py"
        and (lines := _algorithm_name_literals(ast.parse(path.read_text()), names))
    }
    assert found == {}
