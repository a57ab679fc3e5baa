"""The sync protocol: one delta-xDS engine for every link (DESIGN §4).

``messages``      our frozen dataclasses for requests, responses, entries and NACKs
``subscription``  ``reconcile(desired, acked) -> Delta`` and the per-(subscriber, type)
                  state machine: acked versions, the response in flight, backoff holds
``engine``        ``Engine``: desired snapshots per type, sessions, the publisher side
``client_state``  ``Mirror``: the subscriber side, its ACKs/NACKs and resume requests
``wire``          Envoy's ``DeltaDiscoveryRequest/Response`` <-> ``messages`` (the only
                  protobuf-aware module of the engine)
``codec``         Gossamer resources <-> entries (``gossamer.sync.v1.Resource`` in an Any)
``zone_link``     the global ↔ zone link's constants both ends import (kinds, metadata,
                  gRPC options)
``v1``            generated code of ``proto/gossamer/sync/v1/sync.proto``
                  (regenerate with ``python sync/proto/generate.py``)

Everything here except ``v1``'s gRPC stubs is pure: no asyncio, gRPC or sockets.
"""
