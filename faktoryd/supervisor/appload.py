"""Importing the user's app: the modules that register handlers, and the ``[handlers]`` table.

A broken app must fail before any worker starts, with a summary a person can act on (which module, which
error, which line) rather than a wall of import-machinery traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from ..config import AppConfig, Config
from ..registry import HandlerLoadError, Registry, default_registry


class AppLoadError(Exception):
    """The app could not be loaded; ``str()`` is the summary to show (one line per problem)."""


def prepare(app: AppConfig) -> None:
    """Apply ``[app] working_directory`` and ``path`` so the app's modules can be found."""
    if app.working_directory is not None:
        os.chdir(app.working_directory)
    for entry in reversed(app.path):
        if str(entry) not in sys.path:
            sys.path.insert(0, str(entry))


def load_app(config: Config) -> Registry:
    """Import ``[app] modules`` and load ``[handlers]``; returns the registry the workers dispatch with."""
    prepare(config.app)
    for module in config.app.modules:
        try:
            importlib.import_module(module)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise AppLoadError(summarize_import_error(module, exc)) from None
    if config.handlers:
        specs = [f"{jobtype}={target}" for jobtype, target in config.handlers.items()]
        try:
            extra = Registry.from_specs(specs)
        except HandlerLoadError as exc:
            raise AppLoadError("; ".join(f"[handlers] {problem}" for problem in exc.problems)) from None
        for jobtype in extra:
            handler = extra.get(jobtype)
            assert handler is not None
            try:
                default_registry.register(
                    handler.fn,
                    jobtype,
                    queue=handler.queue,
                    retry=handler.retry,
                    reserve_for=handler.reserve_for,
                    timeout=handler.timeout,
                )
            except ValueError as exc:
                raise AppLoadError(f"[handlers] {jobtype}: {exc}") from None
    if not len(default_registry):
        raise AppLoadError(
            "the app registered no job handlers: decorate functions with @faktoryd.job in the modules listed "
            "in [app] modules, or map jobtypes to functions in [handlers]"
        )
    return default_registry


def summarize_import_error(module: str, exc: BaseException) -> str:
    """``cannot import app module 'x': ErrorType: message (file:line)``, pointing at the user's code."""
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}:{exc.lineno})"
    else:
        frames = [
            frame
            for frame in traceback.extract_tb(exc.__traceback__)
            if not frame.filename.startswith("<frozen") and "importlib" not in frame.filename
            and not frame.filename.startswith(os.path.dirname(os.path.dirname(__file__)))
        ]
        if frames:
            where = f" ({frames[-1].filename}:{frames[-1].lineno})"
    hint = ""
    if isinstance(exc, ModuleNotFoundError) and exc.name and module.startswith(exc.name):
        hint = "; check [app] modules and [app] path (sys.path is the working directory plus [app] path)"
    return f"cannot import app module {module!r}: {type(exc).__name__}: {exc}{where}{hint}"


def check_app(config: Config, write_fd: int) -> int:
    """In a short-lived forked process: load the app and report to the parent. Exit 0 (ok) or 3 (failed).

    On success the report is the handlers, one ``jobtype -> module.function`` per line; on failure, the
    summary of what went wrong.
    """
    try:
        registry = load_app(config)
    except AppLoadError as exc:
        os.write(write_fd, str(exc).encode()[:60000])
        return 3
    lines = [f"{jobtype} -> {describe(registry, jobtype)}" for jobtype in sorted(registry)]
    os.write(write_fd, "\n".join(lines).encode()[:60000])
    return 0


def describe(registry: Registry, jobtype: str) -> str:
    """``module.function`` of a jobtype's handler, for listings."""
    handler = registry.get(jobtype)
    fn = handler.fn if handler is not None else None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
