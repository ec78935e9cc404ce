"""``python -m arbiter_env.cli``: the ``arbiter`` command."""

import sys

from arbiter_env.cli import main

if __name__ == "__main__":
    sys.exit(main())
