"""Generated protobuf modules of gossamer.sync.v1."""
