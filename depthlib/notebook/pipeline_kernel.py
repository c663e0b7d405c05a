"""The kernel manager the pipeline runs notebooks with (papermill -> nbclient `kernel_manager_class`).

Two differences from jupyter_client's AsyncKernelManager, each removing a line of noise at its cause
rather than filtering logs (a real kernel error still reaches the terminal):

- Transport encryption (CurveZMQ) where pyzmq has it: the kernel no longer warns, once per notebook,
  that it "is running over TCP without encryption".
- A graceful shutdown without SIGINT. jupyter_client interrupts the kernel before asking it to shut
  down; when the signal lands in the instant after the kernel answered papermill's last request, the
  kernel logs "KeyboardInterrupt caught in kernel" at ERROR on a run that succeeded. The pipeline
  only shuts a kernel down once it is idle, so the request alone is enough; a kernel that does not
  exit in time is still terminated, then killed (finish_shutdown).
"""

from __future__ import annotations

import contextlib
import os
import signal
import weakref
from typing import Any

import zmq
from jupyter_client.manager import AsyncKernelManager
from traitlets import default


_LIVE: "weakref.WeakSet[PipelineKernelManager]" = weakref.WeakSet()


def kill_kernels() -> None:
    """Kill every kernel this process started and still holds, and what each started.

    For a pipeline that must exit at once (its Ctrl-C went unanswered): nbclient's own shutdown at exit is too late
    then, and a kernel runs in a session of its own, so the terminal's signals never reach it.
    """
    for km in list(_LIVE):
        proc = getattr(getattr(km, "provisioner", None), "process", None)
        if proc is None or proc.poll() is not None:
            continue
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)   # its session: the kernel and anything it started
        with contextlib.suppress(OSError):
            proc.kill()


class PipelineKernelManager(AsyncKernelManager):
    """AsyncKernelManager with encrypted transport (when available) and an interrupt-free graceful shutdown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _LIVE.add(self)

    @default("transport_encryption")
    def _transport_encryption_default(self) -> str:
        return "auto" if zmq.has("curve") else "disabled"

    async def shutdown_kernel(self, now: bool = False, restart: bool = False, **kw: Any) -> None:  # type: ignore[override]
        """Ask the kernel to exit, wait for it (then terminate / kill), clean up; `now` or `restart`: the default path."""
        if now or restart or not self.owns_kernel:
            await super().shutdown_kernel(now=now, restart=restart, **kw)
            return
        self.shutting_down = True
        self.stop_restarter()
        if self.has_kernel:
            await self.request_shutdown()
            await self.finish_shutdown()
        await self.cleanup_resources()
