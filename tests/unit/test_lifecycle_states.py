"""The worker lifecycle and the merge store under random interleavings of gunicorn's and the channel's events.

A hypothesis state machine plays gunicorn (fork with slots, exit, reap, pid reuse, a reap our hook never hears of),
the workers (dial the channel, report cumulative values, say goodbye, close) and the channel (accept, sweep, close
what the sweep names), applies the lifecycle's decisions to a real :class:`MergeStore` as the runtime does, and
checks both against a model that follows each *process*, not each pid.

Excluded because no implementation keyed by pid can get them right (docs in otel_gunicorn._arbiter.lifecycle):
accepting a connection after its worker settled, after its pid went to a new process, or from a worker reaped
without our hook while the previous holder of its pid is still unsettled.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from otel_gunicorn._arbiter.lifecycle import DEAD_CONNECTION_GRACE, Actions, WorkerLifecycle
from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._instruments import SLOT_ATTRIBUTE
from otel_gunicorn._snapshot import Kind, MetricMeta
from tests.unit.clock import Clock

COUNTER = MetricMeta("app", "", "", "requests", "", "{request}", Kind.COUNTER)
UPDOWN = MetricMeta("app", "", "", "active", "", "{request}", Kind.UPDOWNCOUNTER)
GAUGE = MetricMeta("app", "", "", "threads", "", "{thread}", Kind.GAUGE)
GRACE = DEAD_CONNECTION_GRACE
MAX_LISTED = 4
pick = st.integers(min_value=0, max_value=63)


@dataclasses.dataclass
class Process:
    """One worker process as the model sees it."""

    pid: int
    slot: int
    state: str = "running"  # running, exited (a zombie gunicorn still lists), reaped, vanished (reaped unheard)
    aborted: bool = False
    dials: int = 0  # connections made and not accepted yet (in the listen backlog)
    open: int = 0  # connections accepted and not closed
    heard: bool = False  # a connection of it was accepted
    goodbye: str | None = None
    dead: bool = False  # the arbiter knows it is dead: no gauges, no up-down counters
    finished_at: float | None = None  # reaped by the hook, or given up on: when the wait for its connections began
    absent_since: float | None = None
    settled: bool = False
    has_data: bool = False
    slot_seen: int | None = None  # the slot its gauges are labelled with
    counter: int = 0
    updown: int = 0
    gauge: int = 0

    @property
    def listed(self) -> bool:
        return self.state in ("running", "exited")

    @property
    def has_record(self) -> bool:
        """Whether the lifecycle must be tracking it."""
        return not self.settled and (self.heard or self.state == "reaped")

    @property
    def reason(self) -> str:
        return "timeout" if self.aborted else self.goodbye or "killed"


class LifecycleMachine(RuleBasedStateMachine):
    """Every rule feeds the model first, then asserts the lifecycle decided what the model expects."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.lifecycle = WorkerLifecycle(clock=self.clock)
        self.store = MergeStore()
        self.procs: list[Process] = []
        self.exits: Counter[str] = Counter()
        self.next_pid = 100

    # ---------------------------------------------------------------- helpers

    def choose(self, which: int, eligible: Callable[[Process], bool]) -> Process:
        candidates = [p for p in self.procs if eligible(p)]
        return candidates[which % len(candidates)]

    def some(self, eligible: Callable[[Process], bool]) -> bool:
        return any(eligible(p) for p in self.procs)

    def latest(self, pid: int) -> Process:
        return [p for p in self.procs if p.pid == pid][-1]

    def older_unsettled(self, p: Process) -> Process | None:
        """The previous holder of ``p``'s pid if it was reaped and is still waiting to settle."""
        older = [q for q in self.procs if q.pid == p.pid and q is not p and q.state == "reaped" and not q.settled]
        return older[0] if older else None

    def pid_is_free(self, pid: int) -> bool:
        p = self.latest(pid)
        unheard_vanished = p.state == "vanished" and not p.has_record
        return (p.state == "reaped" or unheard_vanished) and p.dials == 0 and p.open == 0

    def settle(self, p: Process) -> Actions:
        p.settled = True
        p.dials = 0  # accepting it now would be the excluded case
        if p.state == "reaped":
            self.exits[p.reason] += 1
        return Actions(retire=frozenset({p.pid}))

    def apply(self, actions: Actions) -> None:
        """What the runtime does with the lifecycle's decisions."""
        for pid in actions.drop_gauges:
            self.store.drop_gauges(pid)
        for pid in actions.retire:
            self.store.retire(pid)

    def close(self, p: Process) -> None:
        expected = Actions()
        p.open -= 1
        running = p.state == "running"
        if p.finished_at is not None and p.open == 0:
            expected = self.settle(p)
        elif not running and not p.dead:
            p.dead = True
            expected = Actions(drop_gauges=frozenset({p.pid}))
        actions = self.lifecycle.disconnected(p.pid, running)
        assert expected == actions
        self.apply(actions)

    def sweep_expectation(self, p: Process, now: float) -> Actions:
        expected = Actions()
        if p.finished_at is None:
            if p.listed:
                p.absent_since = None
            elif p.absent_since is None:
                p.absent_since = now
            elif now - p.absent_since > GRACE:  # our child_exit never ran: given up on
                p.finished_at = now
                if not p.dead:
                    p.dead = True
                    expected = Actions(drop_gauges=frozenset({p.pid}))
        if p.finished_at is None:
            return expected
        waited = now - p.finished_at > GRACE
        if p.open == 0 and (p.heard or waited):
            return expected | self.settle(p)
        if p.open > 0 and waited:
            return expected | Actions(close=frozenset({p.pid}))
        return expected

    def sweep_now(self) -> None:
        now = self.clock.now
        expected = Actions()
        for p in [p for p in self.procs if p.has_record]:
            expected |= self.sweep_expectation(p, now)
        actions = self.lifecycle.sweep({p.pid for p in self.procs if p.listed})
        assert expected == actions
        self.apply(actions)
        for pid in actions.close:  # the channel closes every connection of that pid
            p = self.latest(pid)
            while p.open:
                self.close(p)

    # ---------------------------------------------------------------- gunicorn

    @initialize(workers=st.integers(min_value=1, max_value=3))
    def start_connected_workers(self, workers: int) -> None:
        for _ in range(workers):
            self.fork(reuse=False, which=0, dials=True)
            self.accept(which=-1)  # the newest: candidates keep fork order

    @initialize(dialed=st.lists(st.booleans(), max_size=2), aborted=st.booleans())
    def start_with_workers_reaped_unheard(self, dialed: list[bool], aborted: bool) -> None:
        """Workers killed before the channel accepted anything of theirs: late connections and pid reuse follow."""
        for dials in dialed:
            self.fork(reuse=False, which=0, dials=dials)
            self.exit(which=-1, aborted=aborted)
            self.reap(which=-1, hook_runs=True)

    @precondition(lambda self: sum(p.listed for p in self.procs) < MAX_LISTED)
    @rule(reuse=st.booleans(), which=pick, dials=st.booleans())
    def fork(self, reuse: bool, which: int, dials: bool) -> None:
        """gunicorn forks a worker (which may get a freed pid); ``dials``: it connects to the channel at once."""
        # the kernel hands out a freed pid whenever it likes; the interesting case is a holder not settled yet
        free = sorted({p.pid for p in self.procs if self.pid_is_free(p.pid)}, key=lambda pid: self.latest(pid).settled)
        if reuse and free:
            pid = free[which % len(free)]
        else:
            pid, self.next_pid = self.next_pid, self.next_pid + 1
        in_use = [p.slot for p in self.procs if p.listed]
        slot = self.lifecycle.assign_slot(in_use)
        assert slot not in in_use
        assert all(s in in_use for s in range(slot)), "not the smallest free slot"
        self.procs.append(Process(pid, slot, dials=int(dials)))

    @precondition(lambda self: self.some(lambda p: p.state == "running"))
    @rule(which=pick, aborted=st.booleans())
    def exit(self, which: int, aborted: bool) -> None:
        p = self.choose(which, lambda p: p.state == "running")
        p.state, p.aborted = "exited", aborted

    @precondition(lambda self: self.some(lambda p: p.state == "exited"))
    @rule(which=pick, hook_runs=st.sampled_from([True, True, True, False]))
    def reap(self, which: int, hook_runs: bool) -> None:
        p = self.choose(which, lambda p: p.state == "exited")
        if not hook_runs:  # gunicorn reaps the worker, but a user's own child_exit never calls ours
            p.state = "vanished"
            return
        expected = Actions()
        if (older := self.older_unsettled(p)) is not None:  # a second reap of the pid: the older one settles
            expected = self.settle(older)
        had_record = p.has_record
        p.state, p.finished_at = "reaped", self.clock.now
        if had_record and not p.dead:
            expected |= Actions(drop_gauges=frozenset({p.pid}))
        p.dead = True
        if p.heard and p.open == 0:
            expected |= self.settle(p)
        actions = self.lifecycle.reaped(p.pid, p.aborted)
        assert expected == actions
        self.apply(actions)

    # ---------------------------------------------------------------- workers and the channel

    @precondition(lambda self: self.some(lambda p: p.state == "running" and p.dials + p.open < 3))
    @rule(which=pick)
    def dial(self, which: int) -> None:
        self.choose(which, lambda p: p.state == "running" and p.dials + p.open < 3).dials += 1

    def acceptable(self, p: Process) -> bool:
        # Unlisted, with the pid's previous holder unsettled: the connection is taken for that holder's (excluded).
        ambiguous = not p.listed and self.older_unsettled(p) is not None
        return p.dials > 0 and not p.settled and self.latest(p.pid) is p and not ambiguous

    @precondition(lambda self: self.some(self.acceptable))
    @rule(which=pick)
    def accept(self, which: int) -> None:
        p = self.choose(which, self.acceptable)
        expected = Actions()
        if p.listed and (older := self.older_unsettled(p)) is not None:  # the pid was reused
            expected = self.settle(older)
        p.dials, p.open, p.heard = p.dials - 1, p.open + 1, True
        if p.listed and not p.dead:
            p.slot_seen = p.slot
        if p.finished_at is not None:
            p.finished_at = self.clock.now  # a late connection gets the whole grace period
        actions = self.lifecycle.connected(p.pid, p.slot if p.listed else None)
        assert expected == actions
        self.apply(actions)

    @precondition(lambda self: self.some(lambda p: p.open > 0))
    @rule(which=pick, more=st.integers(0, 5), updown=st.integers(-3, 3), gauge=st.integers(0, 9))
    def report(self, which: int, more: int, updown: int, gauge: int) -> None:
        p = self.choose(which, lambda p: p.open > 0)
        p.counter += more
        p.updown, p.gauge, p.has_data = updown, gauge, True
        if p.listed and not p.dead:
            p.slot_seen = p.slot
        verdict = self.lifecycle.report(p.pid, p.slot if p.listed else None)
        assert (True, not p.dead) == (verdict.accepted, verdict.live)
        self.store.report(p.pid, verdict.slot, {COUNTER: {(): p.counter}, UPDOWN: {(): updown}, GAUGE: {(): gauge}})
        if not verdict.live:
            self.store.drop_gauges(p.pid)

    @precondition(lambda self: self.some(lambda p: p.open > 0))
    @rule(which=pick, goodbye=st.sampled_from([None, "normal", "error", "timeout"]))
    def disconnect(self, which: int, goodbye: str | None) -> None:
        """A connection closes, after the worker's goodbye if it sent one (``timeout`` is not a worker's to say)."""
        p = self.choose(which, lambda p: p.open > 0)
        if goodbye is not None:
            if goodbye in ("normal", "error"):
                p.goodbye = goodbye
            self.lifecycle.goodbye(p.pid, goodbye)
        self.close(p)

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.5]))
    def sweep(self, seconds: float) -> None:
        """Time passes, and the channel sweeps (it does at least once a second)."""
        self.clock.now += seconds
        self.sweep_now()

    # ---------------------------------------------------------------- invariants

    @invariant()
    def slots_of_listed_workers_are_unique(self) -> None:
        slots = [p.slot for p in self.procs if p.listed]
        assert len(slots) == len(set(slots))

    @invariant()
    def exits_are_counted_once_with_their_reason(self) -> None:
        assert dict.fromkeys(("timeout", "killed", "error", "normal"), 0) | dict(self.exits) == self.lifecycle.exits

    @invariant()
    def records_are_kept_exactly_until_settled(self) -> None:
        assert {p.pid for p in self.procs if p.has_record} == self.lifecycle.tracked_pids
        assert {p.pid for p in self.procs if p.has_data and not p.settled} == set(self.store.worker_pids)

    @invariant()
    def counter_is_every_process_last_report_summed(self) -> None:
        merged = self.store.merged()
        assert sum(p.counter for p in self.procs) == merged.get(COUNTER, {}).get((), 0)
        alive = [p for p in self.procs if p.has_data and not p.dead and not p.settled]
        assert sum(p.updown for p in alive) == merged.get(UPDOWN, {}).get((), 0)

    @invariant()
    def gauges_belong_to_live_workers_only(self) -> None:
        shown = self.store.merged().get(GAUGE, {})
        expected: dict[tuple, set[int]] = {}
        for p in self.procs:
            if p.has_data and not p.dead and not p.settled and p.slot_seen is not None:
                expected.setdefault(((SLOT_ATTRIBUTE, p.slot_seen),), set()).add(p.gauge)
        assert set(expected) == set(shown)
        # one slot, two processes: only a worker our child_exit never heard of can still hold its old slot
        assert all(shown[key] in values for key, values in expected.items())

    def teardown(self) -> None:
        """Everything settles once connections close and time passes: nothing is kept for a dead process."""
        for p in self.procs:
            p.dials = 0
            while p.open:
                self.close(p)
        for _ in range(3):
            self.clock.now += GRACE + 1
            self.sweep_now()
        dead = [p for p in self.procs if p.state in ("reaped", "vanished") and p.has_record]
        assert [] == dead
        assert Counter(p.reason for p in self.procs if p.state == "reaped") == +self.exits
        assert {p.pid for p in self.procs if p.has_record} == self.lifecycle.tracked_pids


# About 5 s. Rarer paths (pid reuse, late connections) are also pinned by examples in test_lifecycle.py.
LifecycleMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestLifecycleStates = LifecycleMachine.TestCase
