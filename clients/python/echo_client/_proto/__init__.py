"""Generated protobuf and gRPC stubs; never edit."""
