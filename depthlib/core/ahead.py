"""fn over items in order, computed by worker threads a few items ahead of the consumer (decode while computing)."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator


def ahead(fn: Callable[[Any], Any], items: Iterable[Any], threads: int, depth: int = 8, name: str = "ahead") -> Iterator[Any]:
    """fn(x) for x in items, in order, computed by `threads` threads up to `depth` items ahead (0: inline)."""
    if threads <= 0:
        yield from map(fn, items)
        return
    ex = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
    pending: deque[Future] = deque()
    it = iter(items)
    try:
        for x in it:
            pending.append(ex.submit(fn, x))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(ex.submit(fn, nxt))
            yield result
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
