"""Imported first by the local engine's fork server: the server dies with the driver.

The fork server notices its driver's death only when it next reads its pipe, and it then runs
the interpreter's shutdown with torch, wandb and scikit-learn loaded, which takes seconds. Until
then it is an orphan that could still fork workers. On
Linux this module asks the kernel to SIGKILL the server the moment its parent, the driver, ends
(``prctl(PR_SET_PDEATHSIG)``); each worker does the same with the server as its parent
(:func:`arbiter_env.lab.workers.die_with_driver`), so the whole tree goes at once.

It acts only in a process whose parent is the driver named in :data:`DRIVER_ENV_VAR`, which the
engine sets before the server starts; imported anywhere else it does nothing.
"""

from __future__ import annotations

import os

from arbiter_env.lab.workers import kill_me_when_parent_dies

DRIVER_ENV_VAR = "ARBITER_FORKSERVER_DRIVER"

if os.environ.get(DRIVER_ENV_VAR) == str(os.getppid()):
    kill_me_when_parent_dies(expected_parent=os.getppid())
