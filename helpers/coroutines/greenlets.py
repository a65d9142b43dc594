"""Instruments for watching greenlets: a switch recorder, its plot, switch costs, a clean-up check.

Used by chapter 09 (greenlet: switching by hand). The greenlets the chapter
teaches with (ping-pong, the round-robin schedulers and their tasks) are written
in the chapter's own cells; this module only watches and measures them.

* :class:`SwitchRecorder` records every switch between greenlets (who, to whom,
  when, in what order) through :func:`greenlet.settrace`, and
  :func:`plot_switches` draws the recording as one lane per greenlet.
* ``time_*`` functions measure what a switch and a start cost, for greenlets
  and for threads.
* :func:`unfinished_greenlets` lists greenlets that were started (or created)
  and never finished, for a notebook's last cell.

Nothing here prints: results come back as return values.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import greenlet
from greenlet import getcurrent

from helpers.instruments.measure import Timer

__all__ = [
    "Switch",
    "SwitchRecorder",
    "plot_switches",
    "time_greenlet_round_trip",
    "time_thread_round_trip",
    "time_greenlet_start",
    "time_thread_start",
    "unfinished_greenlets",
]

#: Upper bound on recorded switches and timed repetitions, so no loop runs away.
MAX_STEPS = 100_000


def _check_count(name: str, value: Any, *, minimum: int = 0, maximum: int = MAX_STEPS) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class Switch:
    """One recorded switch: sequence number, kind, who handed over, who took over, when."""

    seq: int
    event: str  # "switch" or "throw"
    source: str
    target: str
    time: float  # time.perf_counter() seconds


class SwitchRecorder:
    """Record every greenlet switch in this thread while the ``with`` block runs.

    Greenlets are shown by the names given to :meth:`name`; the greenlet that
    entered the block is called ``main_name``; any other is ``greenlet-1``,
    ``greenlet-2``... in the order first seen. Recording stops silently after
    ``max_events`` switches (``overflowed`` then becomes True), because a trace
    function must never raise.

    The recorder holds greenlets only through weak references and keeps their
    names as strings in the events, so recording never keeps a greenlet alive:
    one that nobody else references is still collected (and, if it was paused,
    sent ``GreenletExit``) while the recorder runs.
    """

    def __init__(
        self, names: Mapping[str, greenlet.greenlet] | None = None, *, main_name: str = "main", max_events: int = 10_000
    ) -> None:
        if not isinstance(main_name, str) or not main_name:
            raise TypeError("main_name must be a non-empty str")
        self.max_events = _check_count("max_events", max_events, minimum=1)
        self.main_name = main_name
        self.events: list[Switch] = []
        self.overflowed = False
        self._names: weakref.WeakKeyDictionary[greenlet.greenlet, str] = weakref.WeakKeyDictionary()
        self._unnamed = 0  # how many "greenlet-N" names were handed out
        self._previous: Any = None
        self._active = False
        for label, glet in (names or {}).items():
            self.name(glet, label)

    def name(self, glet: greenlet.greenlet, label: str) -> greenlet.greenlet:
        """Give ``glet`` a name in the recording; return ``glet``."""
        if not isinstance(glet, greenlet.greenlet):
            raise TypeError(f"glet must be a greenlet, got {type(glet).__name__}")
        if not isinstance(label, str) or not label:
            raise TypeError("label must be a non-empty str")
        self._names[glet] = label  # a weak reference: naming a greenlet does not keep it alive
        return glet

    def label(self, glet: greenlet.greenlet) -> str:
        """The name of ``glet`` in the recording (a new ``greenlet-N`` if it has none yet)."""
        label = self._names.get(glet)
        if label is None:
            self._unnamed += 1
            label = self._names[glet] = f"greenlet-{self._unnamed}"
        return label

    def _trace(self, event: str, args: tuple) -> None:
        if event not in ("switch", "throw"):
            return
        if len(self.events) >= self.max_events:
            self.overflowed = True
            return
        source, target = args
        self.events.append(
            Switch(len(self.events) + 1, event, self.label(source), self.label(target), time.perf_counter())
        )

    def __enter__(self) -> SwitchRecorder:
        if self._active:
            raise RuntimeError("this SwitchRecorder is already recording")
        current = getcurrent()
        if current not in self._names:
            self.name(current, self.main_name)
        self._previous = greenlet.settrace(self._trace)
        self._active = True
        return self

    def __exit__(self, *exc_info) -> None:
        greenlet.settrace(self._previous)
        self._previous = None
        self._active = False

    def ran(self) -> list[str]:
        """Who ran after each switch, in order (the target of every switch)."""
        return [s.target for s in self.events]

    def forget_greenlets(self) -> None:
        """Forget the names given to greenlets (the recorded events keep theirs)."""
        self._names.clear()


def plot_switches(events: list[Switch], *, lanes: list[str] | None = None, ax=None, title: str = ""):
    """Draw a recording: one lane per greenlet, a bar while it runs, an arrow per switch.

    The x axis is the switch sequence number, so the picture is the same on
    every machine. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    events = list(events)
    if not events:
        raise ValueError("events is empty: there is nothing to draw")
    if not all(isinstance(e, Switch) for e in events):
        raise TypeError("events must be Switch values from a SwitchRecorder")
    order = list(lanes) if lanes is not None else []
    for e in events:
        for who in (e.source, e.target):
            if who not in order:
                order.append(who)
    lane = {who: i for i, who in enumerate(order)}
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.9 + 0.55 * len(order)), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # before switch 1 the source runs; after switch k its target runs until switch k+1
    runs = [(events[0].source, 0)] + [(e.target, e.seq) for e in events]
    for i, (who, start) in enumerate(runs):
        end = runs[i + 1][1] if i + 1 < len(runs) else start + 0.6
        ax.barh(
            lane[who],
            end - start,
            left=start,
            height=0.5,
            color=colors[lane[who] % len(colors)],
            alpha=0.85,
            edgecolor="black",
            linewidth=0.4,
        )
    for e in events:
        ax.annotate(
            "",
            xy=(e.seq, lane[e.target]),
            xytext=(e.seq, lane[e.source]),
            arrowprops=dict(arrowstyle="->", color="red" if e.event == "throw" else "black", linewidth=0.9),
        )
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel("switch number (a bar: that greenlet is running)")
    ax.set_xlim(left=0)
    if title:
        ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return ax


# --------------------------------------------------------------------------- costs


def time_greenlet_round_trip(n: int = 20_000) -> float:
    """Seconds for one round trip main -> greenlet -> main, averaged over ``n``."""
    _check_count("n", n, minimum=1, maximum=1_000_000)

    def bounce() -> None:
        parent = getcurrent().parent
        for _ in range(n):
            parent.switch()

    glet = greenlet.greenlet(bounce)
    glet.switch()  # start it: it pauses at its first switch
    with Timer() as timer:
        for _ in range(n):  # the last one resumes bounce, which returns
            glet.switch()
    if not glet.dead:
        raise RuntimeError("the bouncing greenlet did not finish")
    return timer.elapsed / n


def time_thread_round_trip(n: int = 2_000, timeout: float = 5.0) -> float:
    """Seconds for one round trip main thread -> other thread -> main, through two Events."""
    _check_count("n", n, minimum=1, maximum=1_000_000)
    there, back = threading.Event(), threading.Event()

    def partner() -> None:
        for _ in range(n):
            if not there.wait(timeout):
                return
            there.clear()
            back.set()

    thread = threading.Thread(target=partner, name="round-trip-partner", daemon=True)
    thread.start()
    try:
        with Timer() as timer:
            for _ in range(n):
                there.set()
                if not back.wait(timeout):
                    raise RuntimeError(f"the partner thread did not answer within {timeout} s")
                back.clear()
    finally:
        thread.join(timeout)
    if thread.is_alive():
        raise RuntimeError("the partner thread did not finish")
    return timer.elapsed / n


def _nothing() -> None:
    return None


def time_greenlet_start(n: int = 20_000) -> float:
    """Seconds to create a greenlet, run it to its end, and get back, averaged over ``n``."""
    _check_count("n", n, minimum=1, maximum=1_000_000)
    with Timer() as timer:
        for _ in range(n):
            greenlet.greenlet(_nothing).switch()
    return timer.elapsed / n


def time_thread_start(n: int = 500, timeout: float = 5.0) -> float:
    """Seconds to create a thread, start it, and join it, averaged over ``n``."""
    _check_count("n", n, minimum=1, maximum=100_000)
    with Timer() as timer:
        for _ in range(n):
            thread = threading.Thread(target=_nothing)
            thread.start()
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"a do-nothing thread did not finish within {timeout} s")
    return timer.elapsed / n


# --------------------------------------------------------------------------- cleanup


def unfinished_greenlets() -> list[greenlet.greenlet]:
    """This thread's greenlets that still exist and are not dead, except its main one.

    That is: started and paused somewhere, or created and never started. gevent's hub
    (alive by design until its thread ends) is not counted, nor are greenlets of other
    threads, such as those of gevent's own thread pool; any other gevent greenlet is.
    """
    gc.collect()
    hub_type = _gevent_hub_type()
    here = _root(greenlet.getcurrent())
    return [
        g
        for g in gc.get_objects()
        if isinstance(g, greenlet.greenlet)
        and not g.dead
        and g.parent is not None
        and _root(g) is here
        and not (hub_type is not None and isinstance(g, hub_type))
    ]


def _root(g: greenlet.greenlet) -> greenlet.greenlet:
    """The main greenlet of the thread that ``g`` belongs to (the end of its parent chain)."""
    while g.parent is not None:
        g = g.parent
    return g


def _gevent_hub_type() -> type | None:
    """gevent's Hub class if gevent is already imported (never import it just to check)."""
    import sys

    hub_module = sys.modules.get("gevent.hub")
    return getattr(hub_module, "Hub", None)
