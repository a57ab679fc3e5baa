"""The sidecar agent: everything ``gossamer proxy run`` does around Envoy (DESIGN §1, §5).

``dataplane_file``  the Dataplane file: ``{{ name }}`` templating, parsing, validation
``identity``        key, CSR, the signed certificate, when to renew (pure)
``rotation``        ``Rotator``: first certificate and renewals at two thirds, with backoff
``sds_state``       the secrets as versioned entries; the state-of-the-world SDS protocol
``sds_server``      ``SecretServer``: SDS (``StreamSecrets`` and ``DeltaSecrets``) on a
                    unix socket, pushing every change to Envoy
``bootstrap``       Envoy's bootstrap, a pure function of ``BootstrapParams``
``cp_client``       the zone CP's agent API over gRPC/TLS; gRPC errors translated here
``session``         the Session stream: register, trust bundle and DNS table, heartbeats,
                    reconnects
``envoy_process``   Envoy's command line and ``EnvoySupervisor`` (restart, hot restart,
                    drain, "cannot start")
``token_file``      the token file: what a token looks like, when to read it again (pure)
``token_refresh``   ``TokenRefresher``: re-reads the token file, hands the Session and then
                    Envoy over to a new token
``agent``           ``Agent``: the startup sequence and the tasks above; ``run_agent``
``errors``          the agent's errors and their exit codes

The command itself is ``cli.run_proxy``.
"""
