"""``--profile DIR``: where the time goes, for the first run of each side on each broker.

The caller's enqueue loop runs under pyinstrument (text and HTML); the worker's drain under
``py-spy record --subprocesses --idle`` in collapsed-stack form (open it in speedscope, or
grep it), so waits on PostgreSQL and the broker show up beside the CPU work. Profilers slow
what they watch: timings of a profiled run are not the benchmark's numbers.
"""

import contextlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def py_spy():
    """py-spy on the PATH, or beside this Python (a virtualenv's bin not on the PATH)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


class Profiles:
    def __init__(self, directory):
        if py_spy() is None:
            raise SystemExit("--profile needs py-spy and pyinstrument (pip install py-spy pyinstrument)")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def caller(self, name):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()
            (self.directory / f"{name}.txt").write_text(profiler.output_text(unicode=False))
            (self.directory / f"{name}.html").write_text(profiler.output_html())

    @contextlib.contextmanager
    def worker(self, pid, name):
        output = self.directory / f"{name}.collapsed.txt"
        spy = subprocess.Popen(
            [
                *(py_spy(), "record", "--pid", str(pid), "--subprocesses", "--idle", "--rate", "250"),
                *("--format", "raw", "--output", str(output)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
