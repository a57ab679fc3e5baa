"""PKI: certificate authorities, CSRs and SPIFFE identities (pure, on ``cryptography``)."""
