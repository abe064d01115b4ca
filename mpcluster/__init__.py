"""mpcluster: the classic multiprocessing.managers "distributed processes" lesson, on real separate hosts.

Standard library only at run time. Roles: ``python3 -m mpcluster master|worker|submit|results|cancel|status|doctor``.
In Python: ``@mpcluster.task("name")`` registers a task kind; ``mpcluster.Client`` submits and follows jobs.

The package by role: ``master/`` (the master process), ``worker/`` (the worker process), ``cli/`` (the command
line), ``doctor/``; at the top only what every role shares: ``protocol`` (the wire), ``link`` and ``sockets``
(connections), ``config``, ``kinds`` (task kinds), ``classic`` (the lesson's protocol) and ``client`` (the API).
"""

from .kinds import task
from .version import __version__


def __getattr__(name: str):
    # The client side is imported on first use, so a worker importing a task module stays light.
    if name in ("Client", "Job", "TaskFailed", "JobCancelled"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'mpcluster' has no attribute {name!r}")


__all__ = ["Client", "Job", "JobCancelled", "TaskFailed", "__version__", "task"]
