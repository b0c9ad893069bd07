"""``python -m echo_service serve``: the same as ``echo-service serve``."""

from echo_service.cli import main

main()
