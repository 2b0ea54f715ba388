"""What the widgets run besides their controls: a render thread, and a background runner for a training run.

Two ways to keep a notebook responsive, each for one situation (the FloatExplorer and the LoraCalculator need
neither: their pictures are SVG strings built in about a millisecond, in the handler itself):

* ``RenderWorker``: a daemon thread that draws when woken. The LiveDashboard uses it so that the training
  thread only appends a record and wakes it: a cell that runs ``train()`` synchronously blocks the kernel's
  event loop, but not a thread.
* ``BackgroundRun``: one function (``train()``, ``trainer.train()``) in a daemon thread, its result or
  exception kept for ``wait()``. A button click reaches the kernel only while no cell runs, so a Stop button
  needs the run in the background.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["STOP", "BackgroundRun", "RenderWorker"]


STOP = "stop"  # what a RenderWorker's tick returns to end its thread


class RenderWorker:
    """A daemon thread that calls ``tick()`` when woken, or when the deadline the last tick asked for passes.

    ``tick()`` returns the seconds after which it wants to run again, None to sleep until the next
    ``wake()``, or ``STOP`` to end the thread (the next ``wake()`` starts a new one). ``wake()`` is cheap
    (an Event.set) and safe from any thread. An exception in ``tick`` goes to ``on_error``; the thread goes on.
    """

    def __init__(self, tick: Callable[[], float | str | None], name: str,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self._tick, self.name, self._on_error = tick, name, on_error
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The current thread (None before the first wake)."""
        return self._thread

    def wake(self) -> None:
        """Make the thread tick soon; start it if it is not running."""
        self._event.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                    self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (after a tick returned STOP); True when it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _loop(self) -> None:
        timeout: float | None = None
        while True:
            self._event.wait(timeout)
            self._event.clear()
            try:
                result = self._tick()
            except Exception as exc:  # noqa: BLE001 -- a drawing bug must not end the live view
                result = None
                if self._on_error is not None:
                    self._on_error(exc)
            if result == STOP:
                with self._lock:  # a wake() that came during the last tick is not lost: tick again
                    if not self._event.is_set():
                        self._thread = None
                        return
                result = 0.0
            timeout = None if result is None else max(float(result), 0.0)


class BackgroundRun:
    """Run one function at a time in a daemon thread and keep how it ended (result, or exception + traceback).

    ``on_done`` runs in that thread after the outcome is recorded and ``running`` is False again, so a
    widget can bring its controls in line with the outcome there.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.result: Any = None
        self.exception: BaseException | None = None
        self.traceback: str | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def running(self) -> bool:
        """True from start() until the outcome is recorded."""
        return self._running

    def start(self, fn: Callable[..., Any], *args: Any, on_done: Callable[[], None] | None = None,
              **kwargs: Any) -> threading.Thread:
        """Start ``fn(*args, **kwargs)`` in a new thread; RuntimeError if the previous one still runs."""
        if self._running:
            raise RuntimeError(f"{self.name} is already running; wait for it to end first")
        self.result, self.exception, self.traceback = None, None, None
        self._running = True
        self._thread = threading.Thread(target=self._body, args=(fn, args, kwargs, on_done), name=self.name,
                                        daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run has ended (or timeout seconds pass); True when it has ended or never started."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _body(self, fn: Callable[..., Any], args: tuple, kwargs: dict, on_done: Callable[[], None] | None) -> None:
        try:
            self.result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 -- everything must reach the widget, nothing may be lost
            self.exception = exc
            self.traceback = traceback.format_exc()
        finally:
            self._running = False
            if on_done is not None:
                on_done()
