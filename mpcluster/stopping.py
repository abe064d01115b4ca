"""Stopping on SIGTERM or SIGINT, the same way in the master and the worker.

A Python signal handler runs on the main thread between two bytecodes, possibly while that thread is inside
``threading.Event.wait()`` and holds the event's lock: a handler that sets the event then waits for a lock its own
thread holds, and the process hangs. So the handler here takes no lock: it only notes which signal came. The
interpreter writes the signal's number to a wakeup pipe (``signal.set_wakeup_fd``) at the moment it arrives; the
main thread waits on that pipe with ``select`` (no lock either) and sets the event itself, outside the handler.
Other threads set the event directly (``Stop.set``), which writes to the same pipe, so the main thread wakes at
once whoever asks it to stop.
"""

from __future__ import annotations

import os
import select
import signal
import threading


class Stop(threading.Event):
    """An event the main thread waits on (``wait_main``), set by a signal or by any thread."""

    def __init__(self) -> None:
        super().__init__()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._installed = False
        self.signal_name = ""  # which signal asked to stop, if one did

    def install(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Handle ``signals`` (call from the main thread). The interpreter wakes this event's pipe from then on,
        so the pipe stays open for the process's life."""
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        self._installed = True
        for sig in signals:
            signal.signal(sig, self._on_signal)

    def close(self) -> None:
        """Close the pipe (not when signals wake it: the interpreter may write to it at any time)."""
        if not self._installed and self._r >= 0:
            os.close(self._r)
            os.close(self._w)
            self._r = self._w = -1

    def _on_signal(self, signum: int, frame) -> None:
        if not self.signal_name:  # no lock, no event: see the module's docstring
            self.signal_name = signal.Signals(signum).name

    def set(self) -> None:
        super().set()
        try:
            os.write(self._w, b"\0")
        except OSError:  # the pipe is full (the main thread is being woken already) or closed
            pass

    def wait_main(self, timeout: float | None = None) -> bool:
        """On the main thread: wait until a signal came or the event is set (or ``timeout`` passed); returns
        whether it is set."""
        if self._r < 0:
            return self.wait(timeout)
        if not self.is_set():
            try:
                select.select([self._r], [], [], timeout)
            except InterruptedError:
                pass
        try:
            while os.read(self._r, 512):
                pass
        except BlockingIOError:
            pass
        if self.signal_name and not self.is_set():
            super().set()
        return self.is_set()
