"""mpcluster: the classic multiprocessing.managers "distributed processes" lesson, on real separate hosts.

Standard library only at run time. Roles: ``python3 -m mpcluster master|worker|submit|status``.
"""

__version__ = "0.1.0"
