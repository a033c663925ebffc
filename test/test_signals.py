"""SIGINT / SIGTERM handling of the node processes, without ROS: the first signal requests the
shutdown (and abandons a start in progress), repeats are ignored, and after teardown a late
repeat cannot kill the process during Python's finalization."""
import os
import signal
import subprocess
import sys
import time

import pytest

CHILD = r"""
import os, signal, sys, time
from latent_segmentation_ros.core.signals import StartupInterrupted, ignore_further_signals, install_shutdown_handlers
request = install_shutdown_handlers()
assert install_shutdown_handlers() is request
print("installed", flush=True)
mode = sys.argv[1]
if mode == "startup":
    request.interrupt_startup = True
    try:
        time.sleep(30)  # a model that takes long to load
        print("start finished", flush=True)
    except StartupInterrupted as error:
        print(f"start abandoned on {error}", flush=True)
    request.interrupt_startup = False
    time.sleep(0.3)  # the repeat arrives here and must not raise
elif mode == "running":
    while not request.wait(0.05):
        pass
    time.sleep(0.3)
print(f"stopping on {request.signal_name} after {request.count} signals", flush=True)
ignore_further_signals()
if mode == "late":
    # Python's finalization resets Python-level handlers to the default action (a repeat then
    # kills the process with SIGINT); an ignored signal stays ignored through it
    print("ignored:", all(signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)), flush=True)
    os.kill(os.getpid(), signal.SIGINT)
print("done", flush=True)
"""


def run(mode, signals=()):
    process = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    assert process.stdout.readline().strip() == "installed"
    for signum in signals:
        time.sleep(0.1)
        os.killpg(process.pid, signum)
    output = process.stdout.read()  # to the end (the child exits), including what readline buffered
    return process.wait(30), output


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_requests_shutdown_and_repeats_are_ignored(first):
    code, output = run("running", [first, signal.SIGINT, signal.SIGINT])
    assert code == 0, output
    assert f"stopping on {first.name} after 3 signals" in output and "Traceback" not in output


def test_a_signal_abandons_a_start_in_progress():
    started = time.monotonic()
    code, output = run("startup", [signal.SIGINT, signal.SIGINT])
    assert code == 0, output
    assert time.monotonic() - started < 10.0  # not the 30 s the start would take
    assert "start abandoned on SIGINT" in output and "start finished" not in output
    assert "stopping on SIGINT after 2 signals" in output and "Traceback" not in output


def test_after_teardown_a_late_signal_is_ignored():
    code, output = run("late")
    assert code == 0, output
    assert "ignored: True" in output and output.rstrip().endswith("done")
