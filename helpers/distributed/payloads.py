"""Data that counts its own arrivals: how often a Dask worker received it.

Used by chapter 16 (``notebooks/16-beyond-one-machine.ipynb``, "Send data once: ``scatter``").

A :class:`Numbers` is a list of ints that, each time it is unpickled, adds one to a counter of
the process that unpickles it (:func:`arrivals_here`). Sent inside every task, it arrives once
per task; scattered once (``client.scatter``) and passed as a future, it arrives once per
worker that needs it. :func:`total` is the task that reads it.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Numbers", "arrivals_here", "total"]

_arrivals = {"count": 0}


def _arrive(values: list[int]) -> Numbers:
    _arrivals["count"] += 1
    return Numbers(values)


class Numbers:
    """A list of ints whose unpickling is counted in the receiving process."""

    def __init__(self, values: Iterable[int]) -> None:
        values = list(values)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise TypeError("values must be ints")
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __reduce__(self):
        return _arrive, (self.values,)


def arrivals_here() -> int:
    """How many :class:`Numbers` this process has unpickled so far."""
    return _arrivals["count"]


def total(numbers: Numbers, start: int, stop: int) -> int:
    """The sum of ``numbers.values[start:stop]``."""
    if not isinstance(numbers, Numbers):
        raise TypeError(f"numbers must be a Numbers, got {type(numbers).__name__}")
    for name, value in (("start", start), ("stop", stop)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return sum(numbers.values[start:stop])
