"""A program state's variables, and the events readers wait on until a variable is set."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from sglang.lang.values import convert_value


class Variables:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.dtypes: dict[str, type] = {}  # int/float/bool gens: converted when read
        self.meta: dict[str, dict[str, Any]] = {}
        self.assigned: list[str] = []  # names set since this store was made (fork join uses it)
        self._events: dict[str, threading.Event] = {}
        self._pending: Counter[str] = Counter()  # queued-but-not-done setters per name
        self._lock = threading.Lock()

    def register(self, name: str, failed: bool) -> None:
        """Called when a node that sets `name` is submitted (in the submitting thread), so a
        read right after `s += gen` waits for that gen instead of failing with KeyError."""
        with self._lock:
            self._pending[name] += 1
            event = self._events.setdefault(name, threading.Event())
            if failed:  # nothing will run any more: don't make readers wait
                event.set()
            else:
                event.clear()

    def set(
        self, name: str, value: Any, meta: dict[str, Any] | None = None, dtype: Any = None
    ) -> None:
        self.values[name] = value
        self.meta[name] = meta or {}
        if dtype in (int, float, bool):
            self.dtypes[name] = dtype
        else:
            self.dtypes.pop(name, None)
        self.assigned.append(name)
        with self._lock:
            self._pending[name] -= 1
            if self._pending[name] <= 0 and name in self._events:
                self._events[name].set()

    def event(self, name: str) -> threading.Event | None:
        return self._events.get(name)

    def get(self, name: str) -> Any:
        return convert_value(name, self.values[name], self.dtypes.get(name))

    def wake_all(self) -> None:
        with self._lock:
            for event in self._events.values():
                event.set()

    def copy(self) -> Variables:
        """For a fork: same values, no pending setters, nothing assigned yet."""
        other = Variables()
        other.values, other.dtypes, other.meta = (
            dict(self.values),
            dict(self.dtypes),
            dict(self.meta),
        )
        return other
