"""``python -m arbiter_env.lab.cli``: the ``arbiter`` command."""

from arbiter_env.lab.cli import console_main

if __name__ == "__main__":
    console_main()
