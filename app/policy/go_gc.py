"""The embedded engine's Go garbage collector settings, given to the process at its start.

The OPA engine runs in process as a Go library, and Go reads ``GOGC`` and ``GOMEMLIMIT``
from the environment the process was started with: setting them in ``os.environ`` later,
even before the library loads, changes nothing (measured: the same tail and the same peak
memory as without). So the long-running commands (``sealgate serve``, ``sealgate
worker``) start themselves again, once, with them in their environment, unless the user
set either. The process keeps its id, its arguments and its CPU affinity.

The values: a collection every tenfold growth of the live heap, with a soft limit of 256
MiB on what Go holds, which makes it collect sooner rather than grow past it. Measured on
a decision over 200 findings (``benchmarks/decision_pipeline.py``, one core): its p95 was
3.6 times its p50 with Go's defaults and 2.0 with these, for 165 MiB more at peak (two
engines); the manifests' memory limit, 512 MiB, leaves the rest to Python.
"""

from __future__ import annotations

import os
import sys

GO_GC_DEFAULTS = {"GOGC": "1000", "GOMEMLIMIT": "256MiB"}


def restart_with_go_gc_defaults() -> None:
    """Replace this process by itself with ``GO_GC_DEFAULTS`` in its environment, unless
    GOGC or GOMEMLIMIT is already set (by the user, or by the restart itself)."""
    if any(name in os.environ for name in GO_GC_DEFAULTS):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, {**os.environ, **GO_GC_DEFAULTS})
