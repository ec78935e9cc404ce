"""``python -m arbiter_env.cli``: the ``arbiter`` command."""

from arbiter_env.cli import console_main

if __name__ == "__main__":
    console_main()
