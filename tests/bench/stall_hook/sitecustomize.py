"""Loaded by Python at start-up when this folder is on ``PYTHONPATH`` (``bench_policies``
puts it there for the processes it starts): with ``GOSSAMER_STALL_TRACE=DIR`` set,
traces the process's event-loop stalls into DIR (``tests.bench.stall_trace``); with
``GOSSAMER_SWITCH_INTERVAL=S``, sets the interpreter's GIL switch interval to S seconds
(``sys.setswitchinterval``, for comparing settings); otherwise does nothing."""

import os
import sys

if os.environ.get("GOSSAMER_STALL_TRACE"):
    from tests.bench.stall_trace import install

    install(os.environ["GOSSAMER_STALL_TRACE"])
if os.environ.get("GOSSAMER_SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["GOSSAMER_SWITCH_INTERVAL"]))
