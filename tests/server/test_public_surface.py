"""The public names of the server, the plans and the client are the ones we
mean to offer; everything else stays in private modules."""

from __future__ import annotations

import echo_client

import echo_service.plans
import echo_service.server


def test_the_server_package_offers_the_factory_and_its_result() -> None:
    assert echo_service.server.__all__ == ["SERVICE_NAME", "EchoServer", "build_server"]


def test_the_plans_package_offers_the_file_plan_and_its_errors() -> None:
    assert set(echo_service.plans.__all__) == {
        "DEFAULT_MAX_READ_BYTES",
        "DEFAULT_MAX_WRITE_BYTES",
        "FileTooLargeError",
        "InvalidPathError",
        "NotRegularFileError",
        "PathEscapeError",
        "PlanLoadError",
        "ReservedPathError",
        "Sandbox",
        "SandboxError",
        "file_plan",
        "load_plan",
    }


def test_every_exported_name_exists_and_comes_from_a_private_module() -> None:
    for package in (echo_service.server, echo_service.plans, echo_client):
        for name in package.__all__:
            value = getattr(package, name)
            module = getattr(value, "__module__", package.__name__)
            assert module == package.__name__ or module.split(".")[-1].startswith(
                "_"
            ), (package.__name__, name, module)


def test_the_client_exports_its_calls_records_and_error_tree() -> None:
    names = set(echo_client.__all__)
    assert {"Client", "AsyncClient", "Json", "EchoError", "Options"} <= names
    for name in names:
        value = getattr(echo_client, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, echo_client.EchoError)
