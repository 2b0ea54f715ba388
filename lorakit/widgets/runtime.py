"""What the widgets run besides their controls: a redraw throttle on the notebook's event loop, a render
thread, and a background runner for a training run.

Three ways to keep a notebook responsive, each for one situation:

* ``Throttle``: a control's handler asks for a redraw; it runs once, right after the handler returns, on the
  kernel's asyncio loop (FloatExplorer, LoraCalculator). Nothing else runs while it draws, which is fine
  while nothing else is running.
* ``RenderWorker``: a daemon thread that draws when woken. The LiveDashboard uses it so that the training
  thread only appends a record and wakes it: a cell that runs ``train()`` synchronously blocks the kernel's
  event loop, but not a thread.
* ``BackgroundRun``: one function (``train()``, ``trainer.train()``) in a daemon thread, its result or
  exception kept for ``wait()``. A button click reaches the kernel only while no cell runs, so a Stop button
  needs the run in the background.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["STOP", "BackgroundRun", "RenderWorker", "Throttle"]


class Throttle:
    """Run ``fn`` at most once per ``interval_s`` of idle time, never inside the request that asked for it.

    In a Jupyter kernel a request schedules one run on the running asyncio loop (immediately after the current
    handler returns, or when the interval since the last run has passed); more requests before it runs add
    nothing. So a bit click returns after its cheap text updates, and a burst of clicks costs one redraw.
    Without a loop (plain Python, tests) requests stay pending until ``flush()``. ``paused`` keeps requests
    pending without scheduling anything (the benchmark uses it to time the handler alone).
    """

    def __init__(self, fn: Callable[[], None], interval_s: float = 0.25) -> None:
        self.fn, self.interval_s = fn, interval_s
        self.pending, self.paused = False, False
        self._last = -math.inf  # when the last run finished (monotonic seconds)
        self._timer: asyncio.TimerHandle | None = None

    def request(self) -> None:
        """Ask for a run: scheduled on the event loop if there is one, else left for flush()."""
        self.pending = True
        if self.paused or self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop: nobody sees the picture until flush() asks for it
        wait = self.interval_s - (time.monotonic() - self._last)
        self._timer = loop.call_later(max(wait, 0.0), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self.paused:
            self.flush()

    def flush(self) -> None:
        """Run now if a request is pending."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.pending:
            self.pending = False
            try:
                self.fn()
            finally:
                self._last = time.monotonic()


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
