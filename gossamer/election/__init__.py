"""Leader election for the control planes' singleton work (DESIGN §7).

``core``: the pure state machine (when to attempt, start and stop). ``leases``: where a
lease lives (``LocalLeases`` for the single-node stores; Postgres's in
``gossamer.store.pg_leases``) and the ``FencedStore`` the singleton work writes through.
``runner``: the asyncio shell that runs the work on the leader only.
"""
