"""A failed call's status as both clients see it, for tests of the modules
that decide what a failure becomes."""

from __future__ import annotations

import grpc


class FailedCall(grpc.RpcError):
    """What a gRPC call raises: a code, details and (no) trailers."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return ()
