"""``python3 -m mpcluster master | worker | submit | results | cancel | status | doctor``: one function per
subcommand."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from .api import Client
from .config import (
    ClientSettings,
    ConfigError,
    MasterSettings,
    WorkerSettings,
    parse_address,
    parse_float,
    parse_int,
    read_authkey,
)
from .jobs import MAX_TASKS_PER_JOB
from .protocol import AuthFailed, Link, Unreachable

PUBLIC = "{master,worker,submit,results,cancel,status,doctor}"  # `health` is the container health check: not listed


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad setting
        self.exit(2, f"mpcluster {self.prog.split()[-1]}: error: {message} (see --help)\n")


def _connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--master", metavar="HOST:PORT", help="master address (default: $MPC_MASTER_HOST:$MPC_PORT)")
    p.add_argument("--authkey-file", metavar="FILE", help="authkey file (default: $MPC_AUTHKEY_FILE)")


def _worker_flags(p: argparse.ArgumentParser) -> None:
    _connection_flags(p)
    p.add_argument("--threads", metavar="N", help="thread slots: tasks run at once, for I/O-bound kinds "
                   "(1 to 256; default $MPC_WORKER_THREADS or 1)")
    p.add_argument("--processes", metavar="N", help="process slots: child processes for CPU-bound kinds "
                   "(0 to 64; default $MPC_WORKER_PROCESSES or 0)")
    p.add_argument("--tasks-dir", metavar="DIR", help="folder of your task modules (default $MPC_TASKS_DIR or ./tasks)")
    p.add_argument("--task-modules", metavar="LIST", help="comma-separated modules to import from it "
                   "(default $MPC_TASK_MODULES or all)")


def _wait_flags(p: argparse.ArgumentParser, timeout: str, meaning: str) -> None:
    p.add_argument("--timeout", default=timeout, metavar="S", help=meaning)
    p.add_argument("--connect-timeout", default="30", metavar="S", help="how long to keep trying to reach the master")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpcluster", description="The distributed-processes lesson on real separate hosts.")
    parser.add_argument("--version", action="version", version=f"mpcluster {__version__}")
    sub = parser.add_subparsers(dest="role", required=True, parser_class=_Parser, metavar=PUBLIC)
    sub.add_parser("master", help="serve the queues and the dispatcher; run the demo job")
    _worker_flags(sub.add_parser("worker", help="take tasks from the master and return results"))
    p = sub.add_parser("submit", help="submit a job to a running master and wait for every result")
    _connection_flags(p)
    p.add_argument("--tasks", default=None, metavar="N", help=f"number of tasks (1 to {MAX_TASKS_PER_JOB})")
    p.add_argument("--kind", default="square", help="task kind: square, sleep, primes or one of your own")
    p.add_argument("--seconds", default="1.0", metavar="S", help="built-in kinds: simulated work per task (0 allowed)")
    p.add_argument("--args", default=None, metavar="JSON", help="the arguments of each of the N tasks (a JSON object)")
    p.add_argument("--input", default=None, metavar="F.jsonl", help="one task per line: a JSON object of arguments")
    p.add_argument("--output", default=None, metavar="F.jsonl", help="write each result as a JSON line, in task order")
    p.add_argument("--task-timeout", default=None, metavar="S", help="stop a task running longer than S seconds")
    p.add_argument("--max-attempts", default="3", metavar="N",
                   help="fail a task whose worker died N times running it (default 3)")
    p.add_argument("--protocol", default="mpcluster", help="mpcluster (leases, exactly-once) or classic (the lesson's queues)")
    p.add_argument("--seed", default=None, metavar="INT", help="seed for the random task numbers")
    _follow_flags(p)
    p = sub.add_parser("results", help="follow a job submitted earlier, with the same output as submit")
    _connection_flags(p)
    p.add_argument("job", metavar="JOB", help="the job's id (submit prints it)")
    p.add_argument("--output", default=None, metavar="F.jsonl", help="write each result as a JSON line, in task order")
    _follow_flags(p)
    p = sub.add_parser("cancel", help="cancel a job: drop what has not run, stop what runs")
    _connection_flags(p)
    p.add_argument("job", metavar="JOB", help="the job's id")
    p.add_argument("--json", action="store_true", help="print the job's summary as one JSON object")
    p.add_argument("--connect-timeout", default="30", metavar="S", help="how long to keep trying to reach the master")
    p = sub.add_parser("status", help="the cluster as the master sees it")
    _connection_flags(p)
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.add_argument("--watch", action="store_true", help="redraw every second (Ctrl-C to stop)")
    p.add_argument("--wait-workers", default="0", metavar="N", help="wait until at least N workers are alive")
    p.add_argument("--wait-job", default="", metavar="PREFIX",
                   help="wait until the newest job whose id starts with PREFIX is complete (e.g. demo-)")
    _wait_flags(p, "60", "how long --wait-workers / --wait-job wait (default 60)")
    p = sub.add_parser("doctor", help="check, step by step, that this machine can reach and use the master")
    _connection_flags(p)
    from .doctor import add_arguments as doctor_arguments

    doctor_arguments(p)
    sub.add_parser("health")  # no help: kept out of the listing
    return parser


def _follow_flags(p: argparse.ArgumentParser) -> None:
    _wait_flags(p, "0", "give up after S seconds (0 = wait for every result)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--quiet", action="store_true", help="no line per result, no progress")


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
    from . import master

    settings = MasterSettings.from_env()
    _setup_logging(settings.log_level)
    return master.main(settings)


def cmd_worker(args) -> int:
    from . import worker

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
    from . import client, jobsource

    settings = ClientSettings.from_env()
    _setup_logging(settings.log_level)
    timeout, _ = _timeouts(args)
    seed = None if args.seed is None else parse_int("--seed", args.seed, -(2**63), 2**63)
    if args.protocol == "classic":
        from .classic import submit_classic

        n = parse_int("--tasks", args.tasks or "10", 1, MAX_TASKS_PER_JOB)
        return submit_classic(_link(args, settings), n, seed, as_json=args.json, timeout=timeout,
                              connect_timeout=_timeouts(args)[1])
    if args.protocol != "mpcluster":
        raise ConfigError(f"--protocol={args.protocol!r} is not valid: expected mpcluster or classic")
    source = jobsource.from_flags(args, seed)
    task_timeout = None if args.task_timeout is None else parse_float("--task-timeout", args.task_timeout, 0.001, 86400)
    with _client(args, settings) as c:
        return client.submit(c, source.kind, source.args(), source.total, as_json=args.json, timeout=timeout,
                             quiet=args.quiet, output=args.output, task_timeout=task_timeout,
                             max_attempts=parse_int("--max-attempts", args.max_attempts, 1, 100),
                             seconds=source.seconds)


def cmd_results(args) -> int:
    from . import client

    settings = ClientSettings.from_env()
    _setup_logging(settings.log_level)
    with _client(args, settings) as c:
        return client.results(c, args.job, as_json=args.json, timeout=_timeouts(args)[0], quiet=args.quiet,
                              output=args.output)


def cmd_cancel(args) -> int:
    from . import client

    settings = ClientSettings.from_env()
    _setup_logging(settings.log_level)
    with _client(args, settings) as c:
        return client.cancel(c, args.job, args.json)


def cmd_status(args) -> int:
    from . import client

    settings = ClientSettings.from_env()
    _setup_logging(settings.log_level)
    timeout, _ = _timeouts(args)
    with _client(args, settings) as c:
        return client.status(c, as_json=args.json, timeout=timeout, wait_job=args.wait_job, watch=args.watch,
                             wait_workers=parse_int("--wait-workers", args.wait_workers, 0, 100_000))


def cmd_health(args) -> int:
    """The container's health check: a full key handshake and a dispatcher call on this container's port."""
    from . import client

    settings = ClientSettings.from_env()
    link = Link("127.0.0.1", settings.port, read_authkey(settings.authkey_file), call_timeout=5.0)
    return client.health(link)


def cmd_doctor(args) -> int:
    from . import doctor

    return doctor.main(args, ClientSettings.from_env())


COMMANDS = {"master": cmd_master, "worker": cmd_worker, "submit": cmd_submit, "results": cmd_results,
            "cancel": cmd_cancel, "status": cmd_status, "doctor": cmd_doctor, "health": cmd_health}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.role](args)
    except (ConfigError, AuthFailed) as e:
        print(f"mpcluster {args.role}: error: {e}", file=sys.stderr)
        return 2
    except KeyError as e:  # the master has no such job
        print(f"mpcluster {args.role}: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 1
    except Unreachable as e:
        print(f"mpcluster {args.role}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
