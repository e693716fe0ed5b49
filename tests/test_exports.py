"""The public surface: a sorted ``__all__``, importable names, one error tree."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import vidgo_async
import vidgo_async.errors
import vidgo_async.testing
from vidgo_async import errors


def isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then the rest."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


@pytest.mark.parametrize("module", [vidgo_async, vidgo_async.errors, vidgo_async.testing])
def test_all_is_sorted(module: object) -> None:
    """Each public module's ``__all__`` is sorted and has no duplicates."""
    names = list(module.__all__)  # type: ignore[attr-defined]
    assert names == sorted(names, key=isort_key)
    assert len(names) == len(set(names))


def test_the_otel_module_exports_sorted_names() -> None:
    """vidgo_async.otel (behind the otel extra) has a sorted ``__all__`` of names that exist."""
    otel = pytest.importorskip("vidgo_async.otel")
    assert otel.__all__ == sorted(otel.__all__, key=isort_key)
    assert all(getattr(otel, name) is not None for name in otel.__all__)


@pytest.mark.parametrize("module", [vidgo_async, vidgo_async.errors, vidgo_async.testing])
def test_every_exported_name_exists(module: object) -> None:
    """Every name in ``__all__`` is importable from its module."""
    for name in module.__all__:  # type: ignore[attr-defined]
        assert getattr(module, name) is not None


@pytest.mark.parametrize("name", vidgo_async.__all__)
def test_exported_objects_live_in_package(name: str) -> None:
    """Exported classes and functions come from vidgo_async, not a dependency."""
    value = getattr(vidgo_async, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        assert value.__module__.startswith("vidgo_async")


def test_every_error_is_in_errors_module() -> None:
    """Every public exception is defined in, and exported by, vidgo_async.errors."""
    exported = [getattr(vidgo_async, n) for n in vidgo_async.__all__]
    exceptions = [v for v in exported if inspect.isclass(v) and issubclass(v, BaseException)]
    assert exceptions
    for cls in exceptions:
        assert cls.__module__ == "vidgo_async.errors"
        assert cls.__name__ in errors.__all__


def test_errors_module_is_fully_reexported() -> None:
    """Every name of vidgo_async.errors is re-exported from vidgo_async itself."""
    for name in errors.__all__:
        assert name in vidgo_async.__all__
        assert getattr(vidgo_async, name) is getattr(errors, name)


def test_every_error_derives_from_vidgo_error() -> None:
    """The error tree has one root."""
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.VidgoError)


@pytest.mark.parametrize(
    ("child", "parents"),
    [
        (errors.ConfigurationError, (errors.VidgoError, ValueError)),
        (errors.TransportError, (errors.VidgoError,)),
        (errors.RequestTimeoutError, (errors.TransportError, TimeoutError)),
        (errors.APIError, (errors.VidgoError,)),
        (errors.BadRequestError, (errors.APIError,)),
        (errors.AuthenticationError, (errors.APIError,)),
        (errors.InsufficientCreditsError, (errors.APIError,)),
        (errors.PermissionDeniedError, (errors.APIError,)),
        (errors.NotFoundError, (errors.APIError,)),
        (errors.ConflictError, (errors.APIError,)),
        (errors.AlreadyConvertedError, (errors.ConflictError,)),
        (errors.RateLimitError, (errors.APIError,)),
        (errors.ServerError, (errors.APIError,)),
        (errors.InvalidResponseError, (errors.VidgoError,)),
        (errors.SubmitOutcomeUnknownError, (errors.VidgoError,)),
        (errors.TaskError, (errors.VidgoError,)),
        (errors.TaskFailedError, (errors.TaskError,)),
        (errors.TaskTimeoutError, (errors.TaskError, TimeoutError)),
    ],
)
def test_error_tree(child: type[Exception], parents: tuple[type[Exception], ...]) -> None:
    """Each error sits where DESIGN.md draws it."""
    for parent in parents:
        assert issubclass(child, parent)


@pytest.mark.parametrize(
    ("unrelated", "other"),
    [
        (errors.TaskError, errors.APIError),
        (errors.SubmitOutcomeUnknownError, errors.APIError),
        (errors.InvalidResponseError, errors.APIError),
        (errors.TransportError, errors.APIError),
    ],
)
def test_error_branches_are_apart(unrelated: type[Exception], other: type[Exception]) -> None:
    """Task failures, unclear submits and bad bodies are not API errors."""
    assert not issubclass(unrelated, other)


@pytest.mark.parametrize(
    "name",
    [
        "VidgoClient",
        "Task",
        "TaskStatus",
        "TaskHandle",
        "ConversionResult",
        "Balance",
        "RetryPolicy",
        "PollPolicy",
        "Timeouts",
    ],
)
def test_design_names_exported(name: str) -> None:
    """The names DESIGN.md fixes are public."""
    assert name in vidgo_async.__all__


def test_private_modules_not_exported() -> None:
    """No private module name leaks into ``__all__``."""
    assert not [n for n in vidgo_async.__all__ if n.startswith("_") and not n.startswith("__")]


def test_package_is_typed() -> None:
    """The package ships py.typed."""
    assert (Path(vidgo_async.__file__).parent / "py.typed").is_file()


def test_testing_exports_fake_and_fault() -> None:
    """vidgo_async.testing exposes FakeVidgo and Fault."""
    assert {"FakeVidgo", "Fault"} <= set(vidgo_async.testing.__all__)
