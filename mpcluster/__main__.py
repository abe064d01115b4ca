"""``python3 -m mpcluster master | worker | submit | status | doctor | health``."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .config import ConfigError, Settings, parse_address, parse_float, parse_int, read_authkey
from .dispatcher import MAX_TASKS_PER_JOB
from .protocol import AuthFailed, Link, Unreachable
from .tasks import KINDS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad setting
        self.exit(2, f"mpcluster {self.prog.split()[-1]}: error: {message} (see --help)\n")


def _connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--master", metavar="HOST:PORT", help="master address (default: $MPC_MASTER_HOST:$MPC_PORT)")
    p.add_argument("--authkey-file", metavar="FILE", help="authkey file (default: $MPC_AUTHKEY_FILE)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpcluster", description="The distributed-processes lesson on real separate hosts.")
    parser.add_argument("--version", action="version", version=f"mpcluster {__version__}")
    sub = parser.add_subparsers(dest="role", required=True, parser_class=_Parser)
    sub.add_parser("master", help="serve the queues and the dispatcher; run the demo job")
    _connection_flags(sub.add_parser("worker", help="take tasks from the master and return results"))
    p = sub.add_parser("submit", help="submit a job to a running master and wait for every result")
    _connection_flags(p)
    p.add_argument("--tasks", required=True, metavar="N", help="number of tasks (1 to 200000)")
    p.add_argument("--kind", default="square", help=f"task kind: {', '.join(KINDS)} (default square)")
    p.add_argument("--seconds", default="1.0", metavar="S", help="simulated work per task (default 1.0; 0 allowed)")
    p.add_argument("--protocol", default="mpcluster", help="mpcluster (leases, exactly-once) or classic (the lesson's queues)")
    p.add_argument("--seed", default=None, metavar="INT", help="seed for the random task numbers")
    p.add_argument("--timeout", default="0", metavar="S", help="give up after S seconds (0 = wait for every result)")
    p.add_argument("--connect-timeout", default="30", metavar="S", help="how long to keep trying to reach the master")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.add_argument("--quiet", action="store_true", help="no line per result")
    p.add_argument("--no-check", action="store_true", help=argparse.SUPPRESS)  # lets tests send bad tasks through
    p = sub.add_parser("status", help="the cluster as the master sees it")
    _connection_flags(p)
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.add_argument("--wait-workers", default="0", metavar="N", help="wait until at least N workers are alive")
    p.add_argument("--timeout", default="60", metavar="S", help="how long --wait-workers waits (default 60)")
    p.add_argument("--connect-timeout", default="30", metavar="S", help="how long to keep trying to reach the master")
    sub.add_parser("health", help=argparse.SUPPRESS)
    p = sub.add_parser("doctor", help="check, step by step, that this machine can reach and use the master")
    _connection_flags(p)
    from .doctor import add_arguments as doctor_arguments

    doctor_arguments(p)
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level), stream=sys.stdout,
                        format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")


def _target(args, settings: Settings) -> tuple[str, int, bytes]:
    host, port = settings.master_host, settings.port
    if getattr(args, "master", None):
        host, port = parse_address("--master", args.master)
    key_file, source = settings.authkey_file, "MPC_AUTHKEY_FILE"
    if getattr(args, "authkey_file", None):
        key_file, source = args.authkey_file, "--authkey-file"
    return host, port, read_authkey(key_file, source)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    role = args.role
    try:
        settings = Settings.from_env()
        _setup_logging(settings.log_level)
        if role == "master":
            from . import master

            return master.main(settings)
        if role == "health":
            host, port, key = "127.0.0.1", settings.port, read_authkey(settings.authkey_file)
            from .client import health

            return health(Link(host, port, key, call_timeout=5.0))
        if role == "doctor":
            from . import doctor

            return doctor.main(args, settings)
        host, port, key = _target(args, settings)
        if role == "worker":
            from . import worker

            return worker.main(settings, host, port, key)
        from . import client

        connect_timeout = parse_float("--connect-timeout", args.connect_timeout, 0, 86400)
        timeout = parse_float("--timeout", args.timeout, 0, 10**7)
        if role == "status":
            return client.status(Link(host, port, key), as_json=args.json, timeout=timeout,
                                 wait_workers=parse_int("--wait-workers", args.wait_workers, 0, 100_000),
                                 connect_timeout=connect_timeout)
        n = parse_int("--tasks", args.tasks, 1, MAX_TASKS_PER_JOB)
        seed = None if args.seed is None else parse_int("--seed", args.seed, -(2**63), 2**63)
        if args.protocol == "classic":
            return client.submit_classic(Link(host, port, key), n, seed, as_json=args.json, timeout=timeout,
                                         connect_timeout=connect_timeout)
        if args.protocol != "mpcluster":
            raise ConfigError(f"--protocol={args.protocol!r} is not valid: expected mpcluster or classic")
        if args.kind not in KINDS:
            raise ConfigError(f"--kind={args.kind!r} is not valid: expected one of {', '.join(KINDS)}")
        # The range (0-3600) is the task kinds' rule, checked per task with the kinds' own message.
        seconds = parse_float("--seconds", args.seconds, 0)
        items = client.make_tasks(n, args.kind, seconds, seed)
        return client.submit(Link(host, port, key), items, as_json=args.json, timeout=timeout,
                             connect_timeout=connect_timeout, check=not args.no_check, quiet=args.quiet)
    except ConfigError as e:
        print(f"mpcluster {role}: error: {e}", file=sys.stderr)
        return 2
    except AuthFailed as e:
        print(f"mpcluster {role}: error: {e}", file=sys.stderr)
        return 2
    except Unreachable as e:
        print(f"mpcluster {role}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
