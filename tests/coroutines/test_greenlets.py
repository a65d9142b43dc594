"""helpers.coroutines.greenlets: the switch recorder, its plot, switch costs, and the clean-up check."""

from __future__ import annotations

import gc
import weakref

import greenlet
import matplotlib
import pytest

matplotlib.use("Agg")

from helpers.coroutines.greenlets import (
    Switch,
    SwitchRecorder,
    plot_switches,
    time_greenlet_round_trip,
    time_greenlet_start,
    time_thread_round_trip,
    time_thread_start,
    unfinished_greenlets,
)


def _ping_pong(rounds: int, recorder: SwitchRecorder) -> list[greenlet.greenlet]:
    """ping creates pong (its parent is ping); they alternate ``rounds`` times, then both finish."""

    def pong(message):
        while message is not None:
            message = ping_glet.switch(message)
        return "pong done"

    def ping():
        pong_glet = recorder.name(greenlet.greenlet(pong), "pong")
        glets.append(pong_glet)
        for i in range(rounds):
            pong_glet.switch(i)
        return pong_glet.switch(None)

    ping_glet = recorder.name(greenlet.greenlet(ping), "ping")
    glets = [ping_glet]
    assert ping_glet.switch() == "pong done"
    return glets


def test_recorder_records_the_exact_switches():
    with SwitchRecorder() as rec:
        glets = _ping_pong(2, rec)
    assert [(e.seq, e.source, e.target) for e in rec.events] == [
        (1, "main", "ping"),
        (2, "ping", "pong"),
        (3, "pong", "ping"),
        (4, "ping", "pong"),
        (5, "pong", "ping"),
        (6, "ping", "pong"),
        (7, "pong", "ping"),
        (8, "ping", "main"),
    ]
    assert rec.ran() == ["ping", "pong", "ping", "pong", "ping", "pong", "ping", "main"]
    assert all(g.dead for g in glets)
    times = [e.time for e in rec.events]
    assert times == sorted(times)
    assert greenlet.gettrace() is None  # the recorder put the previous tracer back
    rec.forget_greenlets()
    assert len(rec.events) == 8


def test_recorder_names_unknown_greenlets_and_throws():
    def pause():
        greenlet.getcurrent().parent.switch()

    with SwitchRecorder(max_events=100) as rec:
        g = greenlet.greenlet(pause)
        g.switch()
        assert isinstance(g.throw(), greenlet.GreenletExit)
    assert [(e.event, e.source, e.target) for e in rec.events] == [
        ("switch", "main", "greenlet-1"),
        ("switch", "greenlet-1", "main"),
        ("throw", "main", "greenlet-1"),
        ("switch", "greenlet-1", "main"),
    ]
    assert rec.ran() == ["greenlet-1", "main", "greenlet-1", "main"]


def test_recorder_does_not_keep_greenlets_alive():
    """A greenlet nobody else references is collected while recording; its events keep its name."""
    cleanup = []

    def pause():
        try:
            greenlet.getcurrent().parent.switch()
        finally:
            cleanup.append("finally ran")

    with SwitchRecorder() as rec:
        finished = rec.name(greenlet.greenlet(lambda: "done"), "finished")
        assert finished.switch() == "done"
        paused = rec.name(greenlet.greenlet(pause), "paused")
        paused.switch()
        unnamed = greenlet.greenlet(lambda: None)
        unnamed.switch()
        refs = [weakref.ref(g) for g in (finished, paused, unnamed)]
        del finished, paused, unnamed
        gc.collect()
        assert [r() for r in refs] == [None, None, None]
        assert cleanup == ["finally ran"]  # dropping the paused one threw GreenletExit into it
        assert len(rec._names) == 1  # only the main greenlet is still named
        later = greenlet.greenlet(lambda: None)
        later.switch()
    ran = ["finished", "main", "paused", "main", "greenlet-1", "main", "paused", "main", "greenlet-2", "main"]
    assert rec.ran() == ran
    assert [e.event for e in rec.events][6] == "throw"  # the collector's GreenletExit


def test_recorder_takes_names_up_front():
    g = greenlet.greenlet(lambda: "done")
    with SwitchRecorder({"worker": g}, main_name="kernel") as rec:
        assert g.switch() == "done"
    assert rec.ran() == ["worker", "kernel"]


def test_recorder_stops_at_max_events_without_raising():
    with SwitchRecorder(max_events=3) as rec:
        _ping_pong(3, rec)
    assert len(rec.events) == 3 and rec.overflowed


def test_recorder_rejects_bad_input():
    with pytest.raises(ValueError):
        SwitchRecorder(max_events=0)
    with pytest.raises(TypeError):
        SwitchRecorder(max_events="10")
    with pytest.raises(TypeError):
        SwitchRecorder(main_name="")
    with pytest.raises(TypeError):
        SwitchRecorder().name("not a greenlet", "x")
    with pytest.raises(TypeError):
        SwitchRecorder().name(greenlet.getcurrent(), "")
    rec = SwitchRecorder()
    with rec:
        with pytest.raises(RuntimeError, match="already recording"):
            rec.__enter__()


def test_plot_switches_draws_a_lane_per_greenlet():
    with SwitchRecorder() as rec:
        _ping_pong(1, rec)
    ax = plot_switches(rec.events, title="ping-pong")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["main", "ping", "pong"]
    with pytest.raises(ValueError):
        plot_switches([])
    with pytest.raises(TypeError):
        plot_switches([("main", "ping")])
    matplotlib.pyplot.close("all")


def test_unfinished_greenlets_finds_a_paused_one():
    g = greenlet.greenlet(lambda: greenlet.getcurrent().parent.switch())
    g.switch()
    assert g in unfinished_greenlets()
    g.throw()
    assert g.dead and g not in unfinished_greenlets()


def test_switch_is_a_plain_record():
    s = Switch(1, "switch", "main", "ping", 0.0)
    assert (s.seq, s.source, s.target) == (1, "main", "ping")


def test_costs_are_small_positive_numbers():
    assert 0 < time_greenlet_round_trip(200) < 0.01
    assert 0 < time_thread_round_trip(50) < 0.1
    assert 0 < time_greenlet_start(200) < 0.01
    assert 0 < time_thread_start(10) < 0.1
    for timer in (time_greenlet_round_trip, time_thread_round_trip, time_greenlet_start, time_thread_start):
        with pytest.raises(ValueError):
            timer(0)
        with pytest.raises(TypeError):
            timer("10")
