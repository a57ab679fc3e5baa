"""Loaded by Python at start-up when this folder is on ``PYTHONPATH``: with
``GOSSAMER_STALL_TRACE=DIR`` set, traces the process's event-loop stalls into DIR
(``tests.bench.stall_trace``); otherwise does nothing."""

import os

if os.environ.get("GOSSAMER_STALL_TRACE"):
    from tests.bench.stall_trace import install

    install(os.environ["GOSSAMER_STALL_TRACE"])
