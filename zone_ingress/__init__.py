"""The zone ingress (DESIGN §6): other zones reach this zone's services through it.

``envoy``  its Envoy resources, pure: SNI ``<service>.<mesh>.mesh`` → the service's
           local sidecars, TLS passed through untouched
``agent``  ``IngressAgent``: registers the ZoneIngress, writes Envoy's bootstrap,
           supervises Envoy (built from ``proxy.agent``'s parts)

The zone CP's side is ``zone_cp.ingresses``; the command is ``cli.run_ingress``.
"""
