"""Certificate authority backends of a mesh: builtin, provided, vault (see ``base``)."""
