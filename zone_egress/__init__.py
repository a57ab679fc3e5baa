"""The zone egress (DESIGN §1, §6): a zone's traffic to external services, and when the
Mesh asks, to other zones, leaves through it.

``envoy``  its Envoy resources, pure: mesh mTLS terminated per external service (SNI
           ``<name>.extsvc.<mesh>.mesh``), MeshTrafficPermission by the caller's
           certificate, TLS originated upstream; other zones' SNIs passed through
``agent``  ``EgressAgent``: registers the ZoneEgress, gets the egress's own certificate
           per mesh it serves, serves it over SDS, supervises Envoy

The zone CP's side is ``zone_cp.egresses``; the command is ``cli.run_egress``.
"""
