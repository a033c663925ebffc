"""Clean shutdown on SIGINT / SIGTERM, however often they arrive, without ROS.

A terminal's Ctrl-C reaches every process of the foreground group, and a launcher forwards it
again, so a node sees SIGINT two or more times. The first SIGINT or SIGTERM only *requests*
shutdown (the node's spin loop sees it within a fraction of a second and tears down in order:
worker thread, node, context); later ones are counted and otherwise ignored, so no
KeyboardInterrupt can fly out of the middle of the teardown and the process exits 0.

Install the handlers as early as possible (the node executables do it before importing torch),
so that a signal during start-up ends the process just as cleanly.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class StartupInterrupted(BaseException):
    """Raised by the first signal while a node is being built (loading a model takes seconds):
    the caller unwinds the half-built node and exits 0 instead of finishing the start first."""


class ShutdownRequest:
    """Set by the first SIGINT or SIGTERM; ``count`` says how many arrived in all.

    While ``interrupt_startup`` is True the first signal also raises StartupInterrupted in the
    main thread; repeats never raise, so teardown code is never interrupted.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name = ""
        self.count = 0
        self.interrupt_startup = False

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        """The signal handler."""
        self.count += 1
        if not self._event.is_set():
            self.signal_name = signal.Signals(signum).name
            self._event.set()
            if self.interrupt_startup:
                self.interrupt_startup = False
                raise StartupInterrupted(self.signal_name)

    def request(self, reason: str) -> None:
        """Ask for shutdown without a signal (e.g. from a test or another thread)."""
        if not self._event.is_set():
            self.signal_name = reason
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


_installed: ShutdownRequest | None = None


def ignore_further_signals() -> None:
    """Once teardown is done: ignore SIGINT and SIGTERM for the rest of the process.

    Python's finalization puts the default action back in place of Python handlers, so a
    second Ctrl-C landing in the last milliseconds of the exit would still kill the process
    with SIGINT (exit -2); an ignored signal stays ignored.
    """
    if threading.current_thread() is threading.main_thread():
        for signum in HANDLED:
            signal.signal(signum, signal.SIG_IGN)


def install_shutdown_handlers() -> ShutdownRequest:
    """Route SIGINT and SIGTERM of this process to one ShutdownRequest (idempotent).

    Only the main thread may install signal handlers; elsewhere (a node built inside a test's
    thread) a request that no signal sets is returned and the caller's handlers stay.
    """
    global _installed
    if _installed is not None:
        return _installed
    request = ShutdownRequest()
    if threading.current_thread() is not threading.main_thread():
        return request
    for signum in HANDLED:
        signal.signal(signum, request.handle)
    _installed = request
    return request
