"""Background tasks: how they start, and how their failures read to a person."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any


def start_task(coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A task that starts at once, in its caller's turn of the event loop (Python 3.12+).

    An answer's task is on the way to its engine request: started eagerly, it runs until that
    request is on the wire (its first real wait is for the engine's answer) before the caller
    goes on, instead of one turn of the event loop later. aiohttp does the same with the task
    that writes a request's body. On 3.11 it is an ordinary task."""
    if sys.version_info >= (3, 12):
        return asyncio.Task(coroutine, loop=asyncio.get_running_loop(), name=name, eager_start=True)
    return asyncio.create_task(coroutine, name=name)


def describe_exception(error: BaseException) -> str:
    """An exception as one line for a person: its type, and its message when it has one."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
