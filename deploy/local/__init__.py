"""A multi-zone Gossamer on one Linux host, in network namespaces (root).

``Environment(topology, state_dir).up()`` builds it and ``down()`` removes it (also what
a crashed run left: everything is named with the topology's prefix); ``run_in(ns, argv)``
runs a command inside one of its namespaces. ``topology.demo()`` is the demo's layout.
Used by ``gossamer demo`` / ``make demo`` (``demo``), ``python -m deploy.local
up|down|status`` and the e2e tests.
"""

from deploy.local.environment import Environment, Options
from deploy.local.topology import Topology, Workload, demo

__all__ = ["Environment", "Options", "Topology", "Workload", "demo"]
