"""The master: one process that serves the lesson's two queues and the mpcluster dispatcher on one port, keeps jobs
in its journal, checks itself for the health probe, and serves the status page (``process.main``).

The dispatcher (the remote interface) has the state types — the book of jobs, the lease table, the worker
registry, the bridge to the lesson's queues, the event log — and a recorder that writes the journal before memory.
Nothing here imports the worker, the command line, the doctor or the Python API (``lint-imports`` checks it).
"""
