"""A worker process's entry point: ``python -m realtime_cascade.audio.worker_process FD PPID``
(started by :class:`~realtime_cascade.audio.workers.WorkerPool`, never by hand)."""

from __future__ import annotations

import sys

from realtime_cascade.audio.workers import worker_main

if __name__ == "__main__":
    worker_main(int(sys.argv[1]), int(sys.argv[2]))
