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
``outcomes``      what every link counts (sent, ACKed, NACKed, received, refused), by type
``observed``      a stream wrapper that reports each delta message's outcome
``v1``            generated code of ``proto/gossamer/sync/v1/sync.proto``
                  (regenerate with ``python sync/proto/generate.py``)

Pure (no asyncio, gRPC or sockets; the import contract checks the engine's core):
``messages``, ``subscription``, ``engine``, ``client_state``, ``wire``, ``codec``,
``bounds`` (what one peer may make a publisher hold), ``errors``, ``zone_link`` and
``outcomes``. The
package also holds the I/O that runs them: ``stream``, the asyncio shells that drive an
``Engine`` or a ``Mirror`` over one gRPC stream with heartbeats; ``feed``, which follows a
store's watch for the publishers; ``applier``, which writes what a mirror accepted to a
store; ``observed``, which counts what crosses a stream.
"""
