"""Configuration: MPC_* environment variables and CLI flags, validated, and the authkey file.

Every value a user can get wrong is refused here with one line naming the variable (or flag), the bad value
(never for the key) and what is expected; the caller turns a ConfigError into exit status 2.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from .protocol import ID_RULE, valid_id

MIN_KEY_BYTES = 16
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\-\[\]]{1,253}$")


class ConfigError(Exception):
    """A bad setting: the message is the one line the user sees."""


def _env(name: str, env: dict | None) -> str | None:
    value = (env if env is not None else os.environ).get(name)
    return None if value is None or value == "" else value


def env_int(name: str, default: int, lo: int, hi: int, env: dict | None = None) -> int:
    raw = _env(name, env)
    if raw is None:
        return default
    return parse_int(name, raw, lo, hi)


def parse_int(name: str, raw: str, lo: int, hi: int) -> int:
    try:
        value = int(raw.strip(), 10)
    except (ValueError, AttributeError):
        raise ConfigError(f"{name}={raw!r} is not valid: expected a whole number from {lo} to {hi}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r} is out of range: expected a whole number from {lo} to {hi}")
    return value


def env_float(name: str, default: float, lo: float, hi: float, env: dict | None = None) -> float:
    raw = _env(name, env)
    if raw is None:
        return default
    return parse_float(name, raw, lo, hi)


def parse_float(name: str, raw: str, lo: float, hi: float = float("inf")) -> float:
    expected = f"a number of seconds from {lo:g} to {hi:g}" if hi != float("inf") else f"a number of seconds >= {lo:g}"
    try:
        value = float(raw.strip())
    except (ValueError, AttributeError):
        raise ConfigError(f"{name}={raw!r} is not valid: expected {expected}") from None
    if value != value or not lo <= value <= hi:  # NaN fails both comparisons
        raise ConfigError(f"{name}={raw!r} is out of range: expected {expected}")
    return value


def parse_host(name: str, raw: str) -> str:
    if not _HOST_RE.match(raw or ""):
        raise ConfigError(f"{name}={raw!r} is not valid: expected a host name or IP address")
    return raw


def parse_address(name: str, raw: str) -> tuple[str, int]:
    """HOST:PORT (or [v6]:PORT) -> (host, port)."""
    host, sep, port = (raw or "").rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name}={raw!r} is not valid: expected HOST:PORT, e.g. master:5000 or 127.0.0.1:5000")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return parse_host(name, host), parse_int(name, port, 1, 65535)


def parse_worker_id(raw: str | None) -> str:
    if raw is not None and not valid_id(raw):
        raise ConfigError(f"MPC_WORKER_ID={raw!r:.80} is not valid: expected {ID_RULE}")
    return raw or ""


def env_choice(name: str, default: str, choices: tuple[str, ...], env: dict | None = None) -> str:
    raw = _env(name, env)
    if raw is None:
        return default
    value = raw.strip().upper() if choices and choices[0].isupper() else raw.strip()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} is not valid: expected one of {', '.join(choices)}")
    return value


def read_authkey(path: str, source: str = "MPC_AUTHKEY_FILE") -> bytes:
    """The key is the file's bytes with surrounding whitespace stripped; never echoed anywhere."""
    try:
        with open(path, "rb") as f:
            key = f.read(1 << 16).strip()
    except FileNotFoundError:
        raise ConfigError(
            f"{source}={path!r}: no authkey file there; create one (make key) or point {source} at it"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{source}={path!r} is a directory: expected a file holding the authkey") from None
    except PermissionError:
        raise ConfigError(f"{source}={path!r} cannot be read (permission denied): expected a readable authkey file") from None
    except OSError as e:
        raise ConfigError(f"{source}={path!r} cannot be read ({e.strerror}): expected a readable authkey file") from None
    if not key:
        raise ConfigError(f"{source}={path!r}: the authkey file is empty; expected at least {MIN_KEY_BYTES} bytes")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{source}={path!r}: the authkey is too short ({len(key)} bytes); expected at least {MIN_KEY_BYTES} bytes"
        )
    return key


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(env: dict | None) -> str:
    return env_choice("MPC_LOG_LEVEL", "INFO", LOG_LEVELS, env)


def _authkey_file(env: dict | None) -> str:
    return _env("MPC_AUTHKEY_FILE", env) or "/run/secrets/authkey"


# Each role reads only the variables it uses, so a variable meant for another role can never stop it.

@dataclass(frozen=True)
class MasterSettings:
    port: int
    authkey_file: str
    log_level: str
    demo_tasks: int
    lease_seconds: float
    heartbeat_seconds: float
    handshake_timeout: float
    journal: str
    web_port: int = 8080  # the status page's port (0 = no page); in Compose always 8080, published on $MPC_WEB_PORT
    health_file: str = ""  # the image sets it: where the master stamps its own passing health check (see master.py)

    @classmethod
    def from_env(cls, env: dict | None = None) -> MasterSettings:
        lease = env_float("MPC_LEASE_SECONDS", 10.0, 1.0, 3600.0, env)
        heartbeat = env_float("MPC_HEARTBEAT_SECONDS", 2.0, 0.1, 600.0, env)
        if heartbeat * 2 > lease:
            raise ConfigError(
                f"MPC_HEARTBEAT_SECONDS={heartbeat:g} is too long for MPC_LEASE_SECONDS={lease:g}: "
                "expected a heartbeat at most half the lease, so a live worker keeps its leases"
            )
        return cls(
            port=env_int("MPC_PORT", 5000, 1, 65535, env),
            authkey_file=_authkey_file(env),
            log_level=_log_level(env),
            demo_tasks=env_int("MPC_DEMO_TASKS", 10, 0, 100_000, env),
            lease_seconds=lease,
            heartbeat_seconds=heartbeat,
            handshake_timeout=env_float("MPC_HANDSHAKE_TIMEOUT", 10.0, 0.5, 600.0, env),
            journal=_env("MPC_JOURNAL", env) or "",
            web_port=env_int("MPC_WEB_PORT", 8080, 0, 65535, env),
            health_file=_env("MPC_HEALTH_FILE", env) or "",
        )


@dataclass(frozen=True)
class ClientSettings:
    """submit, status, health: where the master is and the key."""

    master_host: str
    port: int
    authkey_file: str
    log_level: str

    @classmethod
    def from_env(cls, env: dict | None = None) -> ClientSettings:
        host = _env("MPC_MASTER_HOST", env)
        return ClientSettings(
            master_host=parse_host("MPC_MASTER_HOST", host) if host is not None else "master",
            port=env_int("MPC_PORT", 5000, 1, 65535, env), authkey_file=_authkey_file(env), log_level=_log_level(env))


#: Thread slots (I/O-bound kinds) and process slots (CPU-bound kinds) per worker: the bounds of their settings.
MAX_THREADS, MAX_PROCESSES = 256, 64


def parse_task_modules(name: str, raw: str | None) -> str:
    """A comma-separated list of module names (empty: every module in the tasks folder)."""
    names = [m.strip() for m in (raw or "").split(",") if m.strip()]
    for m in names:
        if not all(part.isidentifier() for part in m.split(".")):
            raise ConfigError(f"{name}={raw!r:.80} is not valid: expected module names separated by commas, "
                              "e.g. wordcount,images")
    return ",".join(names)


@dataclass(frozen=True)
class WorkerSettings(ClientSettings):
    """What a client reads, and the worker's own settings. The lease and heartbeat timings are the master's: a
    worker learns them from its heartbeat replies."""

    batch_max: int = 1000  # make bench, 4 workers, no-op tasks: 100 -> 500 gave ~20% more, 500 -> 1000 another 4-9%
    stop_grace: float = 5.0
    worker_id: str = ""
    threads: int = 1  # thread slots: the lesson's one task at a time by default
    processes: int = 0  # process slots for CPU-bound kinds
    tasks_dir: str = "tasks"  # relative to the working directory: /app/tasks in the image
    task_modules: str = ""  # comma-separated; empty: every module in tasks_dir

    @classmethod
    def from_env(cls, env: dict | None = None) -> WorkerSettings:
        return cls(
            **vars(ClientSettings.from_env(env)),
            batch_max=env_int("MPC_BATCH_MAX", 1000, 1, 10_000, env),
            stop_grace=env_float("MPC_STOP_GRACE", 5.0, 0.0, 3600.0, env),
            worker_id=parse_worker_id(_env("MPC_WORKER_ID", env)),
            threads=env_int("MPC_WORKER_THREADS", 1, 1, MAX_THREADS, env),
            processes=env_int("MPC_WORKER_PROCESSES", 0, 0, MAX_PROCESSES, env),
            tasks_dir=_env("MPC_TASKS_DIR", env) or "tasks",
            task_modules=parse_task_modules("MPC_TASK_MODULES", _env("MPC_TASK_MODULES", env)),
        )

    def with_flags(self, threads: str | None = None, processes: str | None = None, tasks_dir: str | None = None,
                   task_modules: str | None = None) -> WorkerSettings:
        """The worker's flags override the variables (checked the same way, named as flags)."""
        changes: dict = {}
        if threads is not None:
            changes["threads"] = parse_int("--threads", threads, 1, MAX_THREADS)
        if processes is not None:
            changes["processes"] = parse_int("--processes", processes, 0, MAX_PROCESSES)
        if tasks_dir is not None:
            changes["tasks_dir"] = tasks_dir
        if task_modules is not None:
            changes["task_modules"] = parse_task_modules("--task-modules", task_modules)
        return replace(self, **changes)

    def check_tasks_dir(self, source: str) -> None:
        """A tasks folder named on purpose must exist (the default may be absent: then only the built-in kinds)."""
        if not os.path.isdir(self.tasks_dir):
            raise ConfigError(f"{source}={self.tasks_dir!r} is not a folder: expected the folder that holds your "
                              "task modules")
