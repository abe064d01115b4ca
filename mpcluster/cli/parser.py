"""The command line's parser: one subcommand per role or client command, each with its own flags. Bad flags are
one line and exit status 2, like every other bad setting."""

from __future__ import annotations

import argparse

from ..protocol import MAX_TASKS_PER_JOB
from ..version import __version__

PUBLIC = "{master,worker,submit,results,cancel,status,doctor}"  # `health` is the container health check: not listed


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad setting
        name = " ".join(dict.fromkeys(self.prog.split()))  # "mpcluster" or "mpcluster submit"
        self.exit(2, f"{name}: error: {message} (see --help)\n")


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
    from ..doctor import add_arguments as doctor_arguments

    doctor_arguments(p)
    sub.add_parser("health")  # no help: kept out of the listing
    return parser


def _follow_flags(p: argparse.ArgumentParser) -> None:
    _wait_flags(p, "0", "give up after S seconds (0 = wait for every result)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--quiet", action="store_true", help="no line per result, no progress")
