"""The command line and the comparison runner never branch on a controller's name or kind."""

from __future__ import annotations

import ast
from pathlib import Path

from arbiter_env.controllers import controller_kind, list_controllers

ROOT = Path(__file__).resolve().parents[2] / "arbiter_env" / "lab"
RUNNER_MODULES = sorted([*(ROOT / "cli").glob("*.py"), *(ROOT / "experiments").glob("*.py")])


def _constants(nodes: list[ast.expr], names: set[str] | frozenset[str]) -> list[int]:
    return [
        leaf.lineno
        for node in nodes
        for leaf in ast.walk(node)
        if isinstance(leaf, ast.Constant) and leaf.value in names
    ]


def _literals_in_branches(
    tree: ast.AST, names: set[str], kinds: frozenset[str] | set[str] = frozenset()
) -> list[int]:
    """Lines that compare against a controller name (or kind), key a mapping by one, or list names.

    A kind word such as ``"schedule"`` is also an ordinary word (a table column), so kinds are
    checked only in comparisons with something called ``kind`` (and nothing else is there).
    """
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            # A comparison of a kind (``fixed`` is a name and a kind) is checked against kinds.
            lines += _constants(operands, kinds if "kind" in ast.unparse(node) else names)
        elif isinstance(node, ast.Dict):
            lines += _constants([key for key in node.keys if key is not None], names | kinds)
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            listed = _constants(list(node.elts), names)
            if len(listed) > 1:  # a list of controller names (one name: a command word)
                lines += listed
    return sorted(set(lines))


def _kind_checks(tree: ast.AST) -> list[int]:
    """Lines that ask whether an object can learn or save (``hasattr``) or is an SB3 agent."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr":
            attribute = node.args[1] if len(node.args) > 1 else None
            if isinstance(attribute, ast.Constant) and attribute.value in ("learn", "save", "load"):
                lines.append(node.lineno)
        if isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if "sb3" in name.lower() or "rl_agents" in name.lower():
                lines.append(node.lineno)
    return lines


def test_the_scan_finds_a_branch_on_a_name_and_a_hasattr_check():
    source = (
        'if name in ("ppo", "a2c"):\n'
        "    pass\n"
        'ok = hasattr(c, "learn") or is_sb3(name)\n'
        'if controller_kind(name) == "rl" or name == "fixed":\n'
        "    pass\n"
        'columns = ("seed", "schedule")\n'
    )
    tree = ast.parse(source)
    assert _literals_in_branches(tree, {"ppo", "a2c", "fixed"}, {"rl", "schedule"}) == [1, 4]
    assert _literals_in_branches(tree, {"ppo", "a2c", "fixed"}) == [1, 4]  # name == "fixed"
    assert _kind_checks(tree) == [3, 3]


def test_no_runner_or_cli_module_branches_on_a_controller_name_or_kind():
    names = set(list_controllers())
    kinds = {controller_kind(name) for name in names} - {"other"}
    assert {"rl", "hpo", "arbiter"} <= kinds  # the registry says the kinds
    found = {
        str(path.relative_to(ROOT)): lines
        for path in RUNNER_MODULES
        if (tree := ast.parse(path.read_text()))
        and (lines := _literals_in_branches(tree, names, kinds) + _kind_checks(tree))
    }
    assert found == {}


def test_the_report_takes_controller_kinds_from_the_registry_not_a_list_of_names():
    names = set(list_controllers())
    tree = ast.parse((ROOT / "report.py").read_text())
    assert _literals_in_branches(tree, names) == []
