import faulthandler
import os
import sys
import threading
from pathlib import Path

from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

# CI replays the same examples every run (a red CI then means a change broke something, not that
# hypothesis found a new corner); developers' runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


# Python's exit after the last test waits on what the tests left behind (atexit joins of worker
# processes and executor threads, Dask's clean-up). A CI run once stayed there 80 minutes after
# every test had passed, with nothing printed. If the exit takes longer than this, print every
# thread's stack (the cause, for whoever reads the CI log) and exit with pytest's own status.
EXIT_GRACE_S = 60.0
_exit_status = [1]


def pytest_sessionfinish(session, exitstatus):
    _exit_status[0] = int(exitstatus)


def pytest_unconfigure(config):
    def give_up_waiting():
        stream = sys.__stderr__
        print(f"\nconftest: exit still waiting after {EXIT_GRACE_S:.0f} s; stacks:", file=stream)
        faulthandler.dump_traceback(file=stream, all_threads=True)
        stream.flush()
        os._exit(_exit_status[0])

    timer = threading.Timer(EXIT_GRACE_S, give_up_waiting)
    timer.daemon = True
    timer.start()
    # Should the interpreter hold its lock while stuck, the C-level watchdog still reports (exit 1).
    faulthandler.dump_traceback_later(3 * EXIT_GRACE_S, exit=True, file=sys.__stderr__)
