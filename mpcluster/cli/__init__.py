"""The command line: ``python3 -m mpcluster master | worker | submit | results | cancel | status | doctor``.

``parser`` builds the arguments, ``commands`` has one function per command, ``follow`` follows a job as the
terminal shows it, ``jobsource`` makes a job's tasks from the flags, ``view`` draws progress, summaries and status,
``classic_job`` is the lesson's master loop (``submit --protocol classic``).
"""

from __future__ import annotations

import sys

from ..config import ConfigError
from ..protocol import AuthFailed, Unreachable
from .commands import (
    cmd_cancel,
    cmd_doctor,
    cmd_health,
    cmd_master,
    cmd_results,
    cmd_status,
    cmd_submit,
    cmd_worker,
)
from .parser import build_parser

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
