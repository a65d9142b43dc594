"""helpers.coroutines.greenlets: the switch recorder, ping-pong, and the two round-robin schedulers."""
from __future__ import annotations

from functools import partial

import greenlet
import matplotlib
import pytest

matplotlib.use("Agg")

from helpers.coroutines.greenlets import (
    Switch, SwitchRecorder, cooperate, generator_counter, greedy_counter, greenlet_counter,
    ping_pong, plot_switches, round_robin_generators, round_robin_greenlets,
    time_greenlet_round_trip, time_greenlet_start, time_thread_round_trip, time_thread_start,
    unfinished_greenlets,
)


def test_ping_pong_records_the_exact_switches():
    with SwitchRecorder() as rec:
        run = ping_pong(2, rec)
    assert run.result == "ping done, pong done"
    assert run.received == [("pong", "ping 0"), ("ping", "pong 0"),
                            ("pong", "ping 1"), ("ping", "pong 1")]
    assert [(e.seq, e.source, e.target) for e in rec.events] == [
        (1, "main", "ping"), (2, "ping", "pong"), (3, "pong", "ping"), (4, "ping", "pong"),
        (5, "pong", "ping"), (6, "ping", "pong"), (7, "pong", "ping"), (8, "ping", "main")]
    assert all(g.dead for g in run.greenlets.values())
    assert run.greenlets["pong"].parent is run.greenlets["ping"]
    times = [e.time for e in rec.events]
    assert times == sorted(times)
    assert greenlet.gettrace() is None  # the recorder put the previous tracer back


def test_recorder_names_unknown_greenlets_and_throws():
    def pause():
        greenlet.getcurrent().parent.switch()

    with SwitchRecorder(max_events=100) as rec:
        g = greenlet.greenlet(pause)
        g.switch()
        assert isinstance(g.throw(), greenlet.GreenletExit)
    assert [(e.event, e.source, e.target) for e in rec.events] == [
        ("switch", "main", "greenlet-1"), ("switch", "greenlet-1", "main"),
        ("throw", "main", "greenlet-1"), ("switch", "greenlet-1", "main")]
    assert rec.ran() == ["greenlet-1", "main", "greenlet-1", "main"]


def test_recorder_stops_at_max_events_without_raising():
    with SwitchRecorder(max_events=3) as rec:
        ping_pong(3)
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
    rec = SwitchRecorder()
    with rec:
        with pytest.raises(RuntimeError, match="already recording"):
            rec.__enter__()


def test_ping_pong_rejects_bad_rounds():
    with pytest.raises(ValueError):
        ping_pong(0)
    with pytest.raises(TypeError):
        ping_pong(2.5)
    with pytest.raises(TypeError):
        ping_pong(True)


def test_plot_switches_draws_a_lane_per_greenlet():
    with SwitchRecorder() as rec:
        ping_pong(1, rec)
    ax = plot_switches(rec.events, title="ping-pong")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["main", "ping", "pong"]
    with pytest.raises(ValueError):
        plot_switches([])
    with pytest.raises(TypeError):
        plot_switches([("main", "ping")])
    matplotlib.pyplot.close("all")


def _tasks(kind, log, steps=(("a", 3), ("b", 2), ("c", 1))):
    counter = greenlet_counter if kind == "greenlet" else generator_counter
    return {name: partial(counter, name, n, log) for name, n in steps}


def test_both_schedulers_interleave_the_same_way():
    g_log, y_log = [], []
    by_greenlets = round_robin_greenlets(_tasks("greenlet", g_log))
    by_generators = round_robin_generators(_tasks("generator", y_log))
    assert g_log == y_log == ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert by_greenlets.order == by_generators.order == list("abcabcaba")
    assert by_greenlets.results == by_generators.results == {
        "a": "a counted 3", "b": "b counted 2", "c": "c counted 1"}


def test_a_greedy_task_starves_the_others():
    log = []
    round_robin_greenlets({"a": partial(greenlet_counter, "a", 2, log),
                           "greedy": partial(greedy_counter, "greedy", 3, log, work=10),
                           "b": partial(greenlet_counter, "b", 2, log)})
    assert log == ["a0", "greedy0", "greedy1", "greedy2", "b0", "a1", "b1"]


def test_schedulers_stop_at_max_slices_and_finish_the_rest():
    for kind, scheduler in (("greenlet", round_robin_greenlets),
                            ("generator", round_robin_generators)):
        log = []
        run = scheduler(_tasks(kind, log), max_slices=6)
        assert run.order == list("abcabc") and run.results == {"c": "c counted 1"}
    assert unfinished_greenlets() == []


def test_schedulers_reject_bad_input():
    for scheduler in (round_robin_greenlets, round_robin_generators):
        with pytest.raises(TypeError):
            scheduler([lambda: None])
        with pytest.raises(TypeError):
            scheduler({"a": 42})
        with pytest.raises(TypeError):
            scheduler({1: lambda: None})
        with pytest.raises(ValueError):
            scheduler({}, max_slices=0)
    with pytest.raises(ValueError):
        greedy_counter("g", -1, [])
    with pytest.raises(TypeError):
        greedy_counter("g", 1, [], work=1.5)


def test_cooperate_outside_a_scheduler_is_an_error():
    with pytest.raises(RuntimeError, match="outside a greenlet"):
        cooperate()


def test_unfinished_greenlets_finds_a_paused_one():
    g = greenlet.greenlet(lambda: greenlet.getcurrent().parent.switch())
    g.switch()
    assert g in unfinished_greenlets()
    g.throw()
    assert g.dead and g not in unfinished_greenlets()


def test_switch_is_a_plain_record():
    s = Switch(1, "switch", "main", "ping", 0.0)
    assert (s.seq, s.source, s.target) == (1, "main", "ping")


def test_scheduler_names_its_greenlets_in_a_recorder():
    log = []
    with SwitchRecorder() as rec:
        round_robin_greenlets(_tasks("greenlet", log, steps=(("a", 1), ("b", 1))), recorder=rec)
    assert rec.ran() == ["a", "main", "b", "main", "a", "main", "b", "main"]


def test_costs_are_small_positive_numbers():
    assert 0 < time_greenlet_round_trip(200) < 0.01
    assert 0 < time_thread_round_trip(50) < 0.1
    assert 0 < time_greenlet_start(200) < 0.01
    assert 0 < time_thread_start(10) < 0.1
    for timer in (time_greenlet_round_trip, time_thread_round_trip,
                  time_greenlet_start, time_thread_start):
        with pytest.raises(ValueError):
            timer(0)
        with pytest.raises(TypeError):
            timer("10")
