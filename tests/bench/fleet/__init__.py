"""The fleet simulator of ``tests/bench/bench_fleet.py``: control-plane processes
(``processes``), simulated sidecars (``sidecar``) run by one worker process per zone
(``worker``; ``real_worker`` for real Envoys), the changes and their timing (``changes``,
``watches``), and the numbers (``stats``)."""
