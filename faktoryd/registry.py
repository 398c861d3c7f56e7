"""Handlers: jobtype -> callable, the ``@faktoryd.job`` decorator, and loading ``"module:function"`` specs.

A handler is called with the job's arguments, ``fn(*args)``; an ``async def`` handler is run to completion on
an event loop owned by the worker thread. The decorated function stays callable as before and gains enqueue
helpers (``push``, ``push_in``, ``push_at``, ``options``) that push jobs of its jobtype through a Client.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, overload

from .client import Client, make_job


class HandlerLoadError(ValueError):
    """One or more ``"module:function"`` specs could not be loaded; ``problems`` has one line per bad spec."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("cannot load job handlers:\n  " + "\n  ".join(self.problems))


class Handler:
    """A registered handler: the function, its jobtype and its default job options.

    ``timeout`` (seconds) is the handler's time limit in the worker; ``queue``, ``retry`` and ``reserve_for``
    are the defaults of the jobs pushed through the enqueue helpers.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        jobtype: str,
        *,
        queue: str | None = None,
        retry: int = 25,
        reserve_for: int | None = None,
        timeout: float | None = None,
        registry: Registry | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"handler for {jobtype!r} must be callable, not {type(fn).__name__}")
        if not isinstance(jobtype, str) or not jobtype:
            raise ValueError(f"jobtype must be a non-empty string, not {jobtype!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout of {jobtype!r} must be a positive number of seconds, not {timeout!r}")
        self.fn = fn
        self.jobtype = jobtype
        self.queue = queue
        self.retry = retry
        self.reserve_for = reserve_for
        self.timeout = timeout
        self.registry = registry
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)  # __name__, __doc__, __wrapped__...: it still looks like fn

    def __repr__(self) -> str:
        return f"<Handler {self.jobtype} -> {_qualified(self.fn)}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, in this process, as if it were not decorated."""
        return self.fn(*args, **kwargs)

    # ------------------------------------------------------------------------------------- enqueueing

    def push(self, *args: Any) -> str:
        """Enqueue a job of this type now. Returns its jid."""
        return self.options().push(*args)

    def push_in(self, delay: float | timedelta, *args: Any) -> str:
        """Enqueue a job to run after ``delay`` (seconds or timedelta)."""
        return self.options().push_in(delay, *args)

    def push_at(self, when: datetime, *args: Any) -> str:
        """Enqueue a job to run at ``when`` (an aware datetime)."""
        return self.options().push_at(when, *args)

    def options(
        self,
        *,
        queue: str | None = None,
        retry: int | None = None,
        reserve_for: int | None = None,
        timeout: float | None = None,
        custom: dict[str, Any] | None = None,
        backtrace: int | None = None,
        jid: str | None = None,
        client: Client | None = None,
    ) -> PushOptions:
        """Per-call overrides: ``handler.options(queue="urgent", retry=3).push(user_id)``.

        ``timeout`` travels in the job as ``custom["timeout"]`` and overrides the handler's own for that job.
        """
        return PushOptions(
            self,
            queue=queue,
            retry=self.retry if retry is None else retry,
            reserve_for=self.reserve_for if reserve_for is None else reserve_for,
            timeout=timeout,
            custom=custom,
            backtrace=backtrace,
            jid=jid,
            client=client,
        )


class PushOptions:
    """A handler with options fixed for the next push; made by :meth:`Handler.options`."""

    def __init__(
        self,
        handler: Handler,
        *,
        queue: str | None,
        retry: int,
        reserve_for: int | None,
        timeout: float | None,
        custom: dict[str, Any] | None,
        backtrace: int | None,
        jid: str | None,
        client: Client | None,
    ) -> None:
        self.handler = handler
        self.queue = queue
        self.retry = retry
        self.reserve_for = reserve_for
        self.custom = dict(custom) if custom else {}
        if timeout is not None:
            if not timeout > 0:
                raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
            self.custom["timeout"] = timeout
        self.backtrace = backtrace
        self.jid = jid
        self.client = client

    def push(self, *args: Any) -> str:
        return self._push(args)

    def push_in(self, delay: float | timedelta, *args: Any) -> str:
        return self._push(args, delay=delay)

    def push_at(self, when: datetime, *args: Any) -> str:
        return self._push(args, at=when)

    def _push(self, args: Sequence[Any], *, at: datetime | None = None, delay: float | timedelta | None = None) -> str:
        handler = self.handler
        client = self.client or (handler.registry or default_registry).client
        job = make_job(
            handler.jobtype,
            args,
            queue=self.queue or handler.queue or client.settings.default_queue,
            at=at,
            delay=delay,
            retry=self.retry,
            reserve_for=self.reserve_for,
            custom=self.custom or None,
            backtrace=self.backtrace,
            jid=self.jid,
        )
        return client.push(job)


class Registry:
    """Handlers by jobtype. ``faktoryd.job`` registers into :data:`default_registry`; build your own to keep
    separate sets (one per worker, per test)."""

    def __init__(self, client: Client | None = None) -> None:
        self._handlers: dict[str, Handler] = {}
        self._client = client
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Registry {sorted(self._handlers)}>"

    def __contains__(self, jobtype: object) -> bool:
        return jobtype in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def get(self, jobtype: str) -> Handler | None:
        return self._handlers.get(jobtype)

    @property
    def client(self) -> Client:
        """The Client the enqueue helpers use; created from the environment on first use unless set."""
        with self._lock:
            if self._client is None:
                self._client = Client()
            return self._client

    @client.setter
    def client(self, client: Client) -> None:
        self._client = client

    def register(
        self,
        fn: Callable[..., Any],
        jobtype: str | None = None,
        *,
        queue: str | None = None,
        retry: int = 25,
        reserve_for: int | None = None,
        timeout: float | None = None,
    ) -> Handler:
        """Register ``fn`` (under its ``__name__`` unless ``jobtype`` is given) and return its Handler.

        Registering the same function again (a module imported twice) replaces it; a different function
        under a taken jobtype is an error.
        """
        if isinstance(fn, Handler):
            fn = fn.fn
        name = jobtype or getattr(fn, "__name__", None)
        if not name:
            raise ValueError(f"{fn!r} has no __name__: pass the jobtype explicitly")
        handler = Handler(fn, name, queue=queue, retry=retry, reserve_for=reserve_for, timeout=timeout, registry=self)
        existing = self._handlers.get(name)
        if existing is not None and _qualified(existing.fn) != _qualified(fn):
            raise ValueError(
                f"jobtype {name!r} is already handled by {_qualified(existing.fn)}; "
                f"cannot also register {_qualified(fn)}: give one of them another jobtype"
            )
        self._handlers[name] = handler
        return handler

    @overload
    def job(self, fn: Callable[..., Any], /) -> Handler: ...

    @overload
    def job(
        self,
        jobtype: str | None = None,
        /,
        *,
        queue: str | None = None,
        retry: int = 25,
        reserve_for: int | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[..., Any]], Handler]: ...

    def job(
        self,
        target: Any = None,
        /,
        *,
        queue: str | None = None,
        retry: int = 25,
        reserve_for: int | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Decorator: ``@job`` registers a function under its name; ``@job("SendEmail", queue="mail",
        retry=5, reserve_for=600, timeout=60)`` under an explicit jobtype with default options."""
        if callable(target):
            return self.register(target)
        if target is not None and not isinstance(target, str):
            raise TypeError(f"@job takes a jobtype string or a function, not {type(target).__name__}")

        def decorate(fn: Callable[..., Any]) -> Handler:
            return self.register(fn, target, queue=queue, retry=retry, reserve_for=reserve_for, timeout=timeout)

        return decorate

    @classmethod
    def from_specs(cls, specs: Iterable[str]) -> Registry:
        """A registry from ``"module:function"`` (jobtype = the function's name, or the decorated jobtype)
        or ``"JobType=module:function"`` strings. Every bad spec is reported, in one HandlerLoadError."""
        registry = cls()
        problems: list[str] = []
        origin: dict[str, str] = {}
        for spec in specs:
            try:
                jobtype, target = _load(spec)
            except _SpecError as exc:
                problems.append(f"{spec!r}: {exc}")
                continue
            options: dict[str, Any] = {}
            if isinstance(target, Handler):
                jobtype = jobtype or target.jobtype
                options = {
                    "queue": target.queue,
                    "retry": target.retry,
                    "reserve_for": target.reserve_for,
                    "timeout": target.timeout,
                }
            name = jobtype or getattr(target, "__name__", "")
            if name in origin:
                problems.append(f"{spec!r}: jobtype {name!r} is already registered by {origin[name]!r}")
                continue
            try:
                registry.register(target, name or None, **options)
            except (TypeError, ValueError) as exc:
                problems.append(f"{spec!r}: {exc}")
                continue
            origin[name] = spec
        if problems:
            raise HandlerLoadError(problems)
        return registry


class _SpecError(Exception):
    pass


def _load(spec: str) -> tuple[str | None, Any]:
    """Import the callable a spec names; returns (explicit jobtype or None, the object)."""
    if not isinstance(spec, str):
        raise _SpecError(f'expected a "module:function" string, not {type(spec).__name__}')
    jobtype, eq, path = spec.partition("=")
    if not eq:
        jobtype, path = "", spec
    jobtype = jobtype.strip()
    module_name, colon, attr_path = path.strip().partition(":")
    if not colon or not module_name or not attr_path or (eq and not jobtype):
        raise _SpecError('expected "module:function" or "JobType=module:function"')
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise _SpecError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        raise _SpecError(f"importing module {module_name!r} raised {type(exc).__name__}: {exc}") from None
    parts = attr_path.split(".")
    for index, part in enumerate(parts):
        if not hasattr(target, part):
            owner = f"module {module_name!r}" if index == 0 else repr(f"{module_name}:{'.'.join(parts[:index])}")
            raise _SpecError(f"{owner} has no attribute {part!r}")
        target = getattr(target, part)
    if not callable(target):
        raise _SpecError(f"{module_name}:{attr_path} is a {type(target).__name__}, not a callable")
    return jobtype or None, target


def _qualified(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}"


default_registry = Registry()
"""The registry ``@faktoryd.job`` adds to, and the one a Worker uses when given no handlers."""

job = default_registry.job
