"""Where a submitted job's tasks come from: ``--tasks N`` of a built-in kind (the lesson's random numbers),
``--tasks N --args JSON`` (N identical tasks), or ``--input F.jsonl`` (one JSON object of arguments per line).

Everything is checked before the first task leaves (a bad line of a file is one clear line naming it, and no
half-submitted job); the tasks themselves are generated or read lazily, so a million of them never sit in memory.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .. import kinds
from ..config import ConfigError, parse_float, parse_int
from ..protocol import ID_RULE, MAX_ARGS_BYTES, MAX_TASKS_PER_JOB, valid_id


@dataclass
class Source:
    kind: str
    total: int
    seconds: float  # the built-in kinds' simulated work (for the summary's check of their values)
    make: Callable[[], Iterator[dict]]

    def args(self) -> Iterator[dict]:
        return self.make()


def lesson_args(n: int, kind: str, seconds: float, seed: int | None) -> Iterator[dict]:
    """The built-in kinds' tasks: the lesson's random.randint(0, 10000) for square, 1000-20000 for primes."""
    rng = random.Random(seed)
    for _ in range(n):
        if kind == "square":
            yield {"n": rng.randint(0, 10000), "seconds": seconds}
        elif kind == "sleep":
            yield {"seconds": seconds}
        else:
            yield {"n": rng.randint(1000, 20000)}


def _check(kind: str, i: int, args: object, where: str = "") -> None:
    if not isinstance(args, dict):
        raise ConfigError(f"{where}task {i} is not valid: expected a JSON object of arguments, got "
                          f"{type(args).__name__}")
    if kind in kinds.BUILTIN:
        try:
            kinds.validate(kind, args)
        except kinds.TaskError as e:
            raise ConfigError(f"{where}task {i} is not valid: {e}") from None
    if len(json.dumps(args)) > MAX_ARGS_BYTES:
        raise ConfigError(f"{where}task {i} is not valid: its arguments exceed {MAX_ARGS_BYTES} bytes of JSON")


def _jsonl(path: str) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for each non-blank line; ConfigError naming the line if one is not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except ValueError as e:
                        raise ConfigError(f"--input={path!r}: line {number} is not JSON ({e})") from None
    except OSError as e:
        raise ConfigError(f"--input={path!r} cannot be read ({e.strerror}): expected a JSON-lines file") from None


def from_flags(a, seed: int | None) -> Source:
    kind = a.kind
    if not valid_id(kind):
        raise ConfigError(f"--kind={kind!r} is not valid: expected a task kind's name ({ID_RULE})")
    seconds = parse_float("--seconds", a.seconds, 0)
    if a.input is not None:
        if a.args is not None or a.tasks is not None:
            raise ConfigError("--input gives the tasks: leave out --tasks and --args")
        total = 0
        for number, args in _jsonl(a.input):  # first pass: every line checked before anything is sent
            _check(kind, total, args, f"--input={a.input!r} line {number}: ")
            total += 1
        if not 0 < total <= MAX_TASKS_PER_JOB:
            raise ConfigError(f"--input={a.input!r} has {total} tasks: expected 1 to {MAX_TASKS_PER_JOB}")
        return Source(kind, total, seconds, lambda: (args for _, args in _jsonl(a.input)))
    if a.tasks is None:
        raise ConfigError("say how many tasks: --tasks N (or give them in a file: --input F.jsonl)")
    n = parse_int("--tasks", a.tasks, 1, MAX_TASKS_PER_JOB)
    if a.args is not None:
        try:
            same = json.loads(a.args)
        except ValueError as e:
            raise ConfigError(f"--args={a.args!r:.80} is not JSON ({e}): expected an object, e.g. "
                              "'{\"n\": 3}'") from None
        _check(kind, 0, same)
        return Source(kind, n, seconds, lambda: (dict(same) for _ in range(n)))
    if kind not in kinds.BUILTIN:
        return Source(kind, n, seconds, lambda: ({} for _ in range(n)))
    for i, args in enumerate(lesson_args(min(n, 1), kind, seconds, seed)):  # the same rules for all: check one
        _check(kind, i, args)
    return Source(kind, n, seconds, lambda: lesson_args(n, kind, seconds, seed))
