"""SIGINT / SIGTERM handling of the node processes, without ROS: the first signal requests the
shutdown (and abandons a start in progress), repeats are ignored, and after teardown a late
repeat cannot kill the process during Python's finalization.

The child reports each signal it has seen on a line of its own, and the test sends the next one
only after reading that line: no sleeps, so a loaded machine slows the test down but cannot make
a signal miss its window."""
import os
import signal
import subprocess
import sys
import time

import pytest

DEADLINE_S = 60.0  # what a loaded machine may take; a passing run takes a fraction of a second

CHILD = r"""
import os, signal, sys, time
from latent_segmentation_ros.core.signals import StartupInterrupted, ignore_further_signals, install_shutdown_handlers
request = install_shutdown_handlers()
assert install_shutdown_handlers() is request
mode, expected = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + float(sys.argv[3])


def report_signals_until(count):
    # the handler only counts; say so for each new signal, until `count` arrived (or the deadline)
    seen = 0
    while seen < count and time.monotonic() < deadline:
        if request.count > seen:
            seen = request.count
            print(f"signals {seen}", flush=True)
        else:
            time.sleep(0.01)


# "installed": the test sends its first signal only after reading it
if mode == "startup":
    try:
        request.interrupt_startup = True
        print("installed", flush=True)
        time.sleep(float(sys.argv[3]))  # a model that takes long to load
        print("start finished", flush=True)
    except StartupInterrupted as error:
        print(f"start abandoned on {error}", flush=True)
    request.interrupt_startup = False
    report_signals_until(expected)  # the repeats arrive here and must not raise
else:
    print("installed", flush=True)
if mode == "running":
    while not request.wait(0.05):
        pass
    report_signals_until(expected)
print(f"stopping on {request.signal_name} after {request.count} signals", flush=True)
ignore_further_signals()
if mode == "late":
    # Python's finalization resets Python-level handlers to the default action (a repeat then
    # kills the process with SIGINT); an ignored signal stays ignored through it
    print("ignored:", all(signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)), flush=True)
    os.kill(os.getpid(), signal.SIGINT)
print("done", flush=True)
"""


class Child:
    """The child process and what it printed, read line by line."""

    def __init__(self, mode: str, expected: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, mode, str(expected), str(DEADLINE_S)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines: list[str] = []

    def read_until(self, wanted: str) -> None:
        """Read lines until one starts with ``wanted``; fail with all output if the child ends first."""
        while True:
            line = self.process.stdout.readline()
            if not line:
                self.process.wait(DEADLINE_S)
                pytest.fail(f"the child ended before printing {wanted!r}:\n" + "".join(self.lines))
            self.lines.append(line)
            if line.startswith(wanted):
                return

    def signal(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def finish(self) -> tuple[int, str]:
        rest = self.process.stdout.read()  # to the end (the child exits)
        return self.process.wait(DEADLINE_S), "".join(self.lines) + rest


def run(mode, signals=()):
    """Start the child, then send each signal once the child has reported the previous one."""
    child = Child(mode, len(signals))
    child.read_until("installed")
    for index, signum in enumerate(signals):
        child.signal(signum)
        if mode == "startup" and index == 0:
            child.read_until("start abandoned")
        child.read_until(f"signals {index + 1}")
    return child.finish()


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_requests_shutdown_and_repeats_are_ignored(first):
    code, output = run("running", [first, signal.SIGINT, signal.SIGINT])
    assert code == 0, output
    assert f"stopping on {first.name} after 3 signals" in output and "Traceback" not in output


def test_a_signal_abandons_a_start_in_progress():
    started = time.monotonic()
    code, output = run("startup", [signal.SIGINT, signal.SIGINT])
    assert code == 0, output
    assert time.monotonic() - started < DEADLINE_S / 2  # not the start's full length
    assert "start abandoned on SIGINT" in output and "start finished" not in output
    assert "stopping on SIGINT after 2 signals" in output and "Traceback" not in output


def test_after_teardown_a_late_signal_is_ignored():
    code, output = run("late")
    assert code == 0, output
    assert "ignored: True" in output and output.rstrip().endswith("done")
