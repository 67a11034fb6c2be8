"""The scheduler: a heap of timed actions in virtual time, with a step guard."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Final

__all__ = ["Scheduler", "SchedulerError"]

MAX_STEPS: Final = 1_000_000
"Default bound on the actions one run may execute, so a runaway scenario fails fast."


class SchedulerError(RuntimeError):
    """A run went past its step bound."""


class Scheduler:
    """Runs actions in order of their virtual time (ties in order of scheduling)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        #: How many actions ran so far.
        self.steps = 0

    def call_at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at virtual time ``when`` (never earlier than now)."""
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), action))

    def call_later(self, delay: float, action: Callable[[], None]) -> None:
        """Run ``action`` ``delay`` seconds from now."""
        self.call_at(self.now + delay, action)

    def next_time(self) -> float | None:
        """When the next action is due, or ``None``."""
        return self._heap[0][0] if self._heap else None

    def run_until(
        self,
        predicate: Callable[[], bool] | None = None,
        *,
        max_time: float | None = None,
        max_steps: int = MAX_STEPS,
    ) -> bool:
        """Run actions until ``predicate()`` holds, time passes ``max_time``, or none are
        left; return whether the predicate holds. Past ``max_time`` the clock is set to it.

        :raises SchedulerError: after ``max_steps`` actions.
        """
        for _ in range(max_steps):
            if predicate is not None and predicate():
                return True
            if not self._heap or (max_time is not None and self._heap[0][0] > max_time):
                if max_time is not None:
                    self.now = max(self.now, max_time)
                return predicate() if predicate is not None else False
            when, _, action = heapq.heappop(self._heap)
            self.now = when
            self.steps += 1
            action()
        raise SchedulerError(f"scenario did not settle within {max_steps} steps")

    def run_for(self, duration: float, *, max_steps: int = MAX_STEPS) -> None:
        """Run everything due in the next ``duration`` seconds."""
        self.run_until(max_time=self.now + duration, max_steps=max_steps)
