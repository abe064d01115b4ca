"""The worker: one process (``process.Worker``) with slots that lease tasks, run them (in threads or child
processes) and acknowledge the results, a heartbeat that renews exactly the leases it holds, a graceful stop, and
the lesson's own loop for a plain lesson master. Nothing here imports the master (``lint-imports`` checks it).
"""
