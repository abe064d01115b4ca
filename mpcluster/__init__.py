"""mpcluster: the classic multiprocessing.managers "distributed processes" lesson, on real separate hosts.

Standard library only at run time. Roles: ``python3 -m mpcluster master|worker|submit|results|cancel|status``.
In Python: ``@mpcluster.task("name")`` registers a task kind; ``mpcluster.Client`` submits and follows jobs.
"""

__version__ = "0.2.0"

from .tasks import task  # noqa: E402  (the version first: modules below read it)


def __getattr__(name: str):
    # The client side is imported on first use, so a worker importing a task module stays light.
    if name in ("Client", "Job", "TaskFailed", "JobCancelled"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'mpcluster' has no attribute {name!r}")


__all__ = ["Client", "Job", "JobCancelled", "TaskFailed", "__version__", "task"]
