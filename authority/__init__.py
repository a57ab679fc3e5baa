"""What owns a mesh's roots and tokens: the shared services the global composes, and a
standalone zone too.

``mesh_ca`` is the mesh CA controller (roots, rotation, zone intermediates signed from a
CSR), ``mesh_routes`` its API routes; ``token_authority`` issues and verifies zone and
dataplane tokens, ``token_upkeep`` prunes and times out their revocations,
``token_routes`` serves the token API; ``bootstrap`` writes a new store's defaults. A
zone federated into a global composes none of these for its meshes: the global owns them.
"""
