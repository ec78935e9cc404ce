"""The test suite's own hygiene: what one test changes in the process does not reach the next.

The two tests run in file order: the first changes the process as ``arbiter --import`` does, the
second checks that tests/conftest.py undid it.
"""

import os

from arbiter_env.user_code import IMPORTS_ENV_VAR, share_with_workers

_BEFORE = {name: os.environ.get(name) for name in (IMPORTS_ENV_VAR, "PYTHONPATH")}


def test_sharing_imports_with_workers_sets_the_environment():
    share_with_workers(["json", "arbiter_env_not_a_module_of_the_suite"])
    assert "arbiter_env_not_a_module_of_the_suite" in os.environ[IMPORTS_ENV_VAR]
    assert os.getcwd() in os.environ["PYTHONPATH"].split(os.pathsep)


def test_the_next_test_finds_the_environment_as_the_suite_had_it():
    assert {name: os.environ.get(name) for name in _BEFORE} == _BEFORE
