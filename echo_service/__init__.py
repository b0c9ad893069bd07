"""Echo: a gRPC service that accepts, journals, runs and reports actions.

Serve with ``echo-service serve`` (see ``echo_service.cli``); embed with
``echo_service.server.build_server``.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
