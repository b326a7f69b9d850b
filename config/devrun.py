"""The process runner of ``make run`` and ``make serve``: ``honcho start`` (the Procfile's web,
workers and beat, their output interleaved), stopping the way a terminal's Ctrl-C stops a single
program.

honcho stops its processes by sending SIGTERM to each one's whole process group, so Celery's pool
processes are killed under their worker (logged as errors: "exited with 'signal 15 (SIGTERM)'"),
the worker is SIGKILLed five seconds later, and honcho exits 130, which make reports as
"Error 130". Here Ctrl-C (or SIGTERM) sends a Celery worker SIGTERM, to the worker alone: its
warm shutdown (a task running finishes, a message taken but not acknowledged, acks_late, goes
back to the queue, the worker stops its own pool and exits 0). The gunicorn master gets SIGTERM
alone too: its graceful shutdown (the requests in flight finish, config/gunicorn.py's
``graceful_timeout``, then its workers stop and it exits 0). The other processes get SIGINT,
sent to their process group as a terminal's Ctrl-C is: beat stops. A stop asked for exits 0. A
process still running ``KILL_WAIT`` seconds after the first one stopped is killed with its group,
as before (its unacknowledged task is delivered again).

    python -m config.devrun --port 8000      # the arguments of ``honcho start``
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys

from honcho import command
from honcho import manager as honcho_manager

# Long enough for a warm shutdown of the workers; shorter than any task's time limit.
KILL_WAIT = 15
CELERY_WORKER = re.compile(r"\bcelery\b.*\sworker\b")
GUNICORN = re.compile(r"\bgunicorn\b")


class Manager(honcho_manager.Manager):
    stop_requested = False

    def terminate(self) -> None:
        # Called by the signal handler, or once when a process stopped by itself.
        if not self._terminating and not self._any_stopped():
            self.stop_requested = True
        super().terminate()

    def _killall(self, force: bool = False) -> None:
        for name, process in self._processes.items():
            pid = process.get("pid")
            if "returncode" in process or pid is None:
                continue
            if force:
                sig, send = signal.SIGKILL, os.killpg
            elif CELERY_WORKER.search(process["obj"].cmd) or GUNICORN.search(process["obj"].cmd):
                sig, send = signal.SIGTERM, os.kill
            else:
                sig, send = signal.SIGINT, os.killpg
            self._system_print(f"sending {sig.name} to {name} (pid {pid})\n")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                send(pid, sig)

    def loop(self) -> None:
        super().loop()
        if self.stop_requested:
            self.returncode = 0


def main(argv: list[str] | None = None) -> None:
    honcho_manager.KILL_WAIT = KILL_WAIT
    command.Manager = Manager
    command.main(["start", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
