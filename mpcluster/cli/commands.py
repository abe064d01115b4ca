"""One function per command of ``python3 -m mpcluster``: each reads its settings (flags first, then the MPC_*
variables), then hands over to the role or the client code that does the work."""

from __future__ import annotations

import logging
import os
import sys

from ..client import Client
from ..config import (
    ClientSettings,
    ConfigError,
    MasterSettings,
    WorkerSettings,
    parse_address,
    parse_float,
    parse_int,
    read_authkey,
)
from ..link import Link
from ..protocol import MAX_TASKS_PER_JOB


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), stream=sys.stdout,
                        format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")


def _link(args, settings: ClientSettings | WorkerSettings, call_timeout: float = 30.0) -> Link:
    """The master's address and key: flags first, then the MPC_* variables."""
    host, port = settings.master_host, settings.port
    if getattr(args, "master", None):
        host, port = parse_address("--master", args.master)
    key_file, source = settings.authkey_file, "MPC_AUTHKEY_FILE"
    if getattr(args, "authkey_file", None):
        key_file, source = args.authkey_file, "--authkey-file"
    return Link(host, port, read_authkey(key_file, source), call_timeout=call_timeout)


def _timeouts(args) -> tuple[float, float]:
    return (parse_float("--timeout", args.timeout, 0, 10**7),
            parse_float("--connect-timeout", args.connect_timeout, 0, 86400))


def cmd_master(args) -> int:
    from ..master import process as master

    settings = MasterSettings.from_env()
    _setup_logging(settings.log_level)
    return master.main(settings)


def cmd_worker(args) -> int:
    from ..worker import process as worker

    env = WorkerSettings.from_env()
    settings = env.with_flags(args.threads, args.processes, args.tasks_dir, args.task_modules)
    if args.tasks_dir is not None or os.environ.get("MPC_TASKS_DIR"):  # named on purpose: it must be there
        settings.check_tasks_dir("--tasks-dir" if args.tasks_dir is not None else "MPC_TASKS_DIR")
    _setup_logging(settings.log_level)
    _link(args, settings)  # the address and the key are checked once, here, before any thread starts
    return worker.main(settings, lambda: _link(args, settings))  # one link per thread: see Worker.link


def _client(args, settings: ClientSettings) -> Client:
    connect_timeout = parse_float("--connect-timeout", args.connect_timeout, 0, 86400)
    return Client(link=_link(args, settings), connect_timeout=connect_timeout)


def cmd_submit(args) -> int:
    from . import follow, jobsource

    settings = ClientSettings.from_env()
    _setup_logging(settings.log_level)
    timeout, _ = _timeouts(args)
    seed = None if args.seed is None else parse_int("--seed", args.seed, -(2**63), 2**63)
    if args.protocol == "classic":
        from .classic_job import submit_classic

        n = parse_int("--tasks", args.tasks or "10", 1, MAX_TASKS_PER_JOB)
        return submit_classic(_link(args, settings), n, seed, as_json=args.json, timeout=timeout,
                              connect_timeout=_timeouts(args)[1])
    if args.protocol != "mpcluster":
        raise ConfigError(f"--protocol={args.protocol!r} is not valid: expected mpcluster or classic")
    source = jobsource.from_flags(args, seed)
    task_timeout = None if args.task_timeout is None else parse_float("--task-timeout", args.task_timeout, 0.001, 86400)
    with _client(args, settings) as c:
        return follow.submit(c, source.kind, source.args(), source.total, as_json=args.json, timeout=timeout,
                             quiet=args.quiet, output=args.output, task_timeout=task_timeout,
                             max_attempts=parse_int("--max-attempts", args.max_attempts, 1, 100),
                             seconds=source.seconds)


def cmd_results(args) -> int:
    from . import follow

    settings = ClientSettings.from_env()
    _setup_logging(settings.log_level)
    with _client(args, settings) as c:
        return follow.results(c, args.job, as_json=args.json, timeout=_timeouts(args)[0], quiet=args.quiet,
                              output=args.output)


def cmd_cancel(args) -> int:
    from . import follow

    settings = ClientSettings.from_env()
    _setup_logging(settings.log_level)
    with _client(args, settings) as c:
        return follow.cancel(c, args.job, args.json)


def cmd_status(args) -> int:
    from . import follow

    settings = ClientSettings.from_env()
    _setup_logging(settings.log_level)
    timeout, _ = _timeouts(args)
    with _client(args, settings) as c:
        return follow.status(c, as_json=args.json, timeout=timeout, wait_job=args.wait_job, watch=args.watch,
                             wait_workers=parse_int("--wait-workers", args.wait_workers, 0, 100_000))


def cmd_health(args) -> int:
    """The container's health check: a full key handshake and a dispatcher call on this container's port."""
    from . import follow

    settings = ClientSettings.from_env()
    link = Link("127.0.0.1", settings.port, read_authkey(settings.authkey_file), call_timeout=5.0)
    return follow.health(link)


def cmd_doctor(args) -> int:
    from .. import doctor

    return doctor.main(args, ClientSettings.from_env())
