"""A CPU-time limit on one call, from any thread: plumbing for verify.py (its departure 4).

math_verify's own timeouts are wall-clock SIGALRM alarms, which raise outside the main thread and
turn a busy machine's right answer into a 0. Here:
- main thread: a SIGALRM timer set to the CPU budget left, re-armed when it rings early
  (`with_alarm`); the caller's own handler and pending timer are put back afterwards;
- any other thread: the call runs in a forked child, whose main thread can use the alarm
  (`in_child`, ~15 ms with torch loaded), killed if it has not answered in time;
- WALL_LIMIT_S is the backstop for a call that waits rather than computes;
- no fork or SIGALRM (Windows): no limit at all.
`warm_up_once` pays a library's first-call costs (sympy's: ~0.5 s) once per process, before any
fork and outside any limit, so that children fork warm.
"""

import contextlib
import os
import select
import signal
import threading
import time

WALL_LIMIT_S = 20.0  # backstop: a comparison starved of CPU by other processes, or stuck
MIN_ALARM_S = 0.01  # the shortest re-armed alarm: the CPU limit is kept to within this
FORK_GRACE_S = 1.0  # extra wait for a forked child to start and report before we kill it
_warm_lock = threading.Lock()
_warmed = set()  # the names already warmed up in this process


class TimeUp(BaseException):
    """Raised at the time limit: a BaseException, which sympy's `except Exception` cannot swallow."""


def call(fn, args, limit_s):
    """bool(fn(*args)), or False once it has used `limit_s` CPU seconds (or WALL_LIMIT_S of wall time)."""
    if not (hasattr(signal, "setitimer") and hasattr(os, "fork")):
        return bool(fn(*args))  # no way to interrupt here
    in_main_thread = threading.current_thread() is threading.main_thread()
    return (with_alarm if in_main_thread else in_child)(fn, args, limit_s)


def warm_up_once(name, fn, cases):
    """fn(*case) for every case, errors ignored, the first time `name` is warmed up in this process."""
    with _warm_lock:
        if name not in _warmed:
            for case in cases:
                with contextlib.suppress(Exception):  # a failed warm-up must not fail its caller
                    fn(*case)
            _warmed.add(name)


def with_alarm(fn, args, limit_s: float) -> bool:
    """fn(*args) in the main thread, stopped once this thread has used limit_s of CPU time. CPU time
    never runs faster than the clock, so the alarm is set to the CPU budget left and set again when
    it rings early (waiting for a busy CPU does not count): a check that ends in time sees none."""
    cpu_start, wall_start = time.thread_time(), time.monotonic()

    def ring(signum, frame):
        left = min(limit_s - (time.thread_time() - cpu_start), WALL_LIMIT_S - (time.monotonic() - wall_start))
        if left <= 0:
            raise TimeUp
        signal.setitimer(signal.ITIMER_REAL, max(left, MIN_ALARM_S))

    old_handler = signal.signal(signal.SIGALRM, ring)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, min(limit_s, WALL_LIMIT_S))
    try:
        try:
            return bool(fn(*args))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            (lambda: None)()  # entering Python code runs the handler of a last ring: `ring`, not the caller's
    except TimeUp:  # also when the alarm lands inside the finally above
        return False
    finally:
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # the caller's own timer, delayed by at most this check
            left = old_delay - (time.monotonic() - wall_start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), old_interval)


def in_child(fn, args, limit_s: float) -> bool:
    """fn(*args) in a forked child, killed if it has not answered within WALL_LIMIT_S. The forking
    thread is the child's main thread (SIGALRM works there); os.fork works in a daemonic Pool worker."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: always leave through os._exit, never back into the caller's code
        try:
            os.close(read_fd)
            os.write(write_fd, b"1" if with_alarm(fn, args, limit_s) else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    ready = []
    try:
        ready, _, _ = select.select([read_fd], [], [], WALL_LIMIT_S + FORK_GRACE_S)
        return bool(ready) and os.read(read_fd, 1) == b"1"
    finally:
        os.close(read_fd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
