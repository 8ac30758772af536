"""Benchmark of the sans-I/O core: cost per event, per transition, per timer, per model.

Usage::

    python bench/core.py [--quick] [--json FILE]

This is a benchmark script, not a test: it prints a table and optionally writes the
figures as JSON.  How it measures:

* every timed figure is taken over repeated runs (``--quick``: fewer and shorter);
  each run times a batch with ``time.perf_counter_ns`` and yields one figure per
  operation; the table reports the median and the 90th percentile over the runs;
* warm-up runs come first and are discarded;
* the garbage collector is collected before and **disabled during** every timing loop
  (reference counting still frees the per-step effects lists);
* rows that time single calls (the transitions of the reconnect cycle) subtract the
  measured overhead of one ``perf_counter_ns`` pair;
* memory is the ``tracemalloc`` delta of Python allocations (bytes traced after minus
  before, objects kept alive) divided by the number of models.

It imports the public names from ``fsm_live`` and ``fsm_live.core``, and, on purpose, two
internals of the core it measures: the events (``fsm_live.core.events``) and the
``transitions`` wrapper (``fsm_live.core.machine.SpecMachine``).

Targets: a step without task effects <= 15 us median, one connection model <= 10 KiB at
10,000 models.  Rows marked ``ref`` compare with a reference figure of the design (a
plain ``transitions`` machine) and have no target.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

# Runnable as ``python bench/core.py`` from a checkout without installing the package.
_ROOT: Final = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402
from transitions import Machine  # noqa: E402

from fsm_live import Config, Failure, Spec  # noqa: E402
from fsm_live.core import Classifier, Lifecycle, LifecycleMachine  # noqa: E402

# The core's own events and its transitions wrapper are measured here on purpose: this
# benchmark times the core's internals (see the module docstring), not the public API.
from fsm_live.core.events import (  # noqa: E402
    Event,
    HeartbeatAcked,
    Inbound,
    LinkFailed,
    Opened,
    Rotate,
    Start,
    Tick,
)
from fsm_live.core.machine import SpecMachine  # noqa: E402

KIB: Final = 1024
STEP_TARGET_NS: Final = 15_000
MODEL_TARGET_BYTES: Final = 10 * KIB

#: A spec whose states have no tasks and no timers: a transition with no task effects.
#: It uses two triggers the event mapping of ``Lifecycle.handle`` fires (``opened``,
#: ``rotate``), so it is driven through ``handle`` like a real connection.
TINY_SPEC: Final[dict[str, Any]] = {
    "name": "bench_tiny",
    "initial": "A",
    "states": {"A": {}, "B": {}},
    "transitions": [
        {"trigger": "opened", "source": "A", "dest": "B"},
        {"trigger": "rotate", "source": "B", "dest": "A"},
    ],
}


# -- results ----------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table.  Times are ns per operation; memory is bytes per model."""

    group: str
    name: str
    n: int
    unit: str
    median: float
    p90: float
    target: float | None = None
    reference: str = ""
    note: str = ""
    samples: list[float] = field(default_factory=list, repr=False)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.median <= self.target

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["met"] = self.met
        return data


@dataclass
class Plan:
    """How much to measure: ``--quick`` shrinks every count."""

    warmup: int
    runs: int
    batch: int  # operations per run for the cheap (sub-10 us) figures
    cycles: int  # reconnect cycles per run
    models: tuple[int, ...]
    unshared_models: int
    memory_repeats: int


QUICK: Final = Plan(
    warmup=2,
    runs=9,
    batch=2_000,
    cycles=300,
    models=(1_000, 10_000),
    unshared_models=100,
    memory_repeats=1,
)
FULL: Final = Plan(
    warmup=5,
    runs=41,
    batch=20_000,
    cycles=2_000,
    models=(1_000, 10_000),
    unshared_models=200,
    memory_repeats=3,
)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(
    group: str,
    name: str,
    n: int,
    samples: list[float],
    *,
    unit: str = "ns",
    target: float | None = None,
    reference: str = "",
    note: str = "",
) -> Row:
    return Row(
        group=group,
        name=name,
        n=n,
        unit=unit,
        median=statistics.median(samples),
        p90=percentile(samples, 90),
        target=target,
        reference=reference,
        note=note,
        samples=samples,
    )


# -- timing harness ---------------------------------------------------------------------------

#: Prepares one run (untimed) and returns (the timed batch, its number of operations).
RunFactory = Callable[[], tuple[Callable[[], object], int]]


def time_runs(prepare: RunFactory, plan: Plan) -> list[float]:
    """Per-operation ns of each run, after ``plan.warmup`` discarded runs; gc off while timing."""
    samples: list[float] = []
    for i in range(plan.warmup + plan.runs):
        batch, n = prepare()
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            batch()
            elapsed = time.perf_counter_ns() - start
        finally:
            gc.enable()
        if i >= plan.warmup:
            samples.append(elapsed / n)
    return samples


def timer_overhead_ns() -> float:
    """The median cost of one ``perf_counter_ns()`` pair (subtracted from single-call times)."""
    clock = time.perf_counter_ns
    deltas = []
    for _ in range(20_001):
        start = clock()
        deltas.append(clock() - start)
    return statistics.median(deltas)


# -- models -----------------------------------------------------------------------------------


#: One seeded jitter source shared by every model (as the default ``random.random`` is):
#: a ``random.Random`` per model would add its ~2.5 KB state to each model's memory.
_RNG: Final = random.Random(1234).random


def _rng() -> Callable[[], float]:
    return _RNG


def connected(machine: LifecycleMachine, config: Config, now: float = 0.0) -> Lifecycle:
    """A lifecycle driven into CONNECTED (Start, Opened)."""
    lifecycle = Lifecycle(machine, config, random=_rng(), now=now)
    lifecycle.handle(Start(now))
    lifecycle.handle(Opened(now + 0.01, lifecycle.generation))
    assert lifecycle.state == "CONNECTED", lifecycle
    return lifecycle


def replay(lifecycle: Lifecycle, events: list[Event]) -> Callable[[], object]:
    handle = lifecycle.handle

    def batch() -> None:
        for event in events:
            handle(event)

    return batch


# -- 1. steps without task effects ------------------------------------------------------------


def bench_steps(plan: Plan, spec: Spec, machine: LifecycleMachine, config: Config) -> list[Row]:
    rows: list[Row] = []
    n = plan.batch
    state = {"clock": 1.0}

    def in_connected(make: Callable[[float, int], Event]) -> RunFactory:
        def prepare() -> tuple[Callable[[], object], int]:
            lifecycle = connected(machine, config, state["clock"])
            base = state["clock"] + 0.02
            # Within the heartbeat timeout: the events only move its deadline.
            events = [make(base + i * 1e-6, lifecycle.generation) for i in range(n)]
            state["clock"] = base + n * 1e-6 + 100.0
            return replay(lifecycle, events), n

        return prepare

    rows.append(
        summarize(
            "1 step, no task effects",
            "Inbound in CONNECTED (no transition)",
            n,
            time_runs(in_connected(lambda now, gen: Inbound(now, gen)), plan),
            target=STEP_TARGET_NS,
        )
    )
    rows.append(
        summarize(
            "1 step, no task effects",
            "HeartbeatAcked in CONNECTED (no transition)",
            n,
            time_runs(in_connected(lambda now, gen: HeartbeatAcked(now, gen, 0.001)), plan),
            target=STEP_TARGET_NS,
        )
    )
    rows.append(
        summarize(
            "1 step, no task effects",
            "Tick in CONNECTED, no timer due",
            n,
            time_runs(in_connected(lambda now, gen: Tick(now)), plan),
            target=STEP_TARGET_NS,
        )
    )

    tiny = LifecycleMachine(Spec.from_mapping(TINY_SPEC), require_triggers=False)

    def tiny_transitions() -> tuple[Callable[[], object], int]:
        lifecycle = Lifecycle(tiny, config, random=_rng())
        generation = lifecycle.generation
        events: list[Event] = []
        for i in range(n):  # A -opened-> B -rotate-> A ...; each entry bumps the generation
            maker = Opened if i % 2 == 0 else Rotate
            events.append(maker(float(i), generation + i))
        return replay(lifecycle, events), n

    rows.append(
        summarize(
            "1 step, no task effects",
            "transition, states without tasks/timers (handle)",
            n,
            time_runs(tiny_transitions, plan),
            target=STEP_TARGET_NS,
            note="tiny spec A<->B via Opened/Rotate; one Emit effect each",
        )
    )
    return rows


# -- 2 and 3. transitions with task effects; a Tick that fires the backoff timer ---------------


def bench_cycle(plan: Plan, machine: LifecycleMachine, failure: Failure) -> list[Row]:
    """CONNECTING -opened-> CONNECTED -lost-> RECONNECTING -retry(Tick)-> CONNECTING ..."""
    # Never exhausted, so every backoff Tick retries (give_up's guard is still evaluated).
    config = Config(max_failures=10**9)
    cycles = plan.cycles

    def cycle_events(lifecycle: Lifecycle, base: float) -> Iterator[Event]:
        generation = lifecycle.generation
        for i in range(cycles):
            t = base + i * 1000.0
            yield Opened(t + 0.1, generation)
            yield LinkFailed(t + 0.2, generation + 1, failure)
            yield Tick(t + 500.0)  # past any backoff delay (cap 60 s); before open_timeout
            generation += 3

    def fresh() -> Lifecycle:
        lifecycle = Lifecycle(machine, config, random=_rng())
        lifecycle.handle(Start(0.0))
        return lifecycle

    def batched() -> tuple[Callable[[], object], int]:
        lifecycle = fresh()
        events = list(cycle_events(lifecycle, 1.0))
        return replay(lifecycle, events), len(events)

    rows = [
        summarize(
            "2 transitions with task effects",
            "reconnect cycle, mean per transition",
            cycles * 3,
            time_runs(batched, plan),
            note="Opened, LinkFailed(refused), Tick(backoff) from CONNECTING; batch-timed",
        )
    ]

    # Single-call timing of each transition of the cycle, minus the clock's own cost.
    overhead = timer_overhead_ns()
    names = {
        Opened: (
            "2 transitions with task effects",
            "Opened: CONNECTING->CONNECTED (-1 +6 tasks, +2 timers)",
        ),
        LinkFailed: (
            "2 transitions with task effects",
            "LinkFailed: CONNECTED->RECONNECTING (-6 tasks, backoff timer)",
        ),
        Tick: ("3 timer", "Tick fires backoff: RECONNECTING->CONNECTING (retry)"),
    }
    per_kind: dict[type, list[float]] = {kind: [] for kind in names}
    clock = time.perf_counter_ns
    for run in range(plan.warmup + plan.runs):
        lifecycle = fresh()
        events = list(cycle_events(lifecycle, 1.0))
        handle = lifecycle.handle
        totals = dict.fromkeys(names, 0)
        gc.collect()
        gc.disable()
        try:
            for event in events:
                start = clock()
                handle(event)
                totals[type(event)] += clock() - start
        finally:
            gc.enable()
        assert lifecycle.state == "CONNECTING", lifecycle
        if run >= plan.warmup:
            for kind, total in totals.items():
                per_kind[kind].append(total / cycles - overhead)
    for kind, (group, name) in names.items():
        note = f"single calls, clock overhead ({overhead:.0f} ns) subtracted" + (
            "; tries give_up (guard fails), then retry" if kind is Tick else ""
        )
        rows.append(summarize(group, name, cycles, per_kind[kind], note=note))
    return rows


# -- 4. memory per connection model ------------------------------------------------------------


def traced_bytes_per(build: Callable[[], list[object]], count: int) -> float:
    """tracemalloc delta of ``build()`` (its result kept alive) divided by ``count``."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == count
    del kept
    return (after - before) / count


def bench_memory(plan: Plan, spec: Spec, machine: LifecycleMachine, config: Config) -> list[Row]:
    rows: list[Row] = []
    group = "4 memory per model"
    for count in plan.models:

        def shared(count: int = count) -> list[object]:
            return [connected(machine, config) for _ in range(count)]

        samples = [traced_bytes_per(shared, count) for _ in range(plan.memory_repeats)]
        rows.append(
            summarize(
                group,
                f"shared machine + shared Config, {count:,} models",
                count,
                samples,
                unit="B",
                target=MODEL_TARGET_BYTES if count >= 10_000 else None,
            )
        )

    count = plan.models[-1]

    def own_config(count: int = count) -> list[object]:
        return [Lifecycle(machine, Config(), random=_rng()) for _ in range(count)]

    def own_config_connected(count: int = count) -> list[object]:
        models: list[object] = []
        for _ in range(count):
            lifecycle = Lifecycle(machine, Config(), random=_rng())
            lifecycle.handle(Start(0.0))
            lifecycle.handle(Opened(0.01, lifecycle.generation))
            models.append(lifecycle)
        return models

    rows.append(
        summarize(
            group,
            f"shared machine, Config() per model, {count:,} models",
            count,
            [traced_bytes_per(own_config_connected, count)],
            unit="B",
            note="config=None builds a Config and a backoff policy per model",
        )
    )
    rows.append(
        summarize(
            group,
            f"idle (DISCONNECTED), Config() per model, {count:,} models",
            count,
            [traced_bytes_per(own_config, count)],
            unit="B",
        )
    )

    unshared = plan.unshared_models

    def unshared_models(count: int = unshared) -> list[object]:
        models: list[object] = []
        for _ in range(count):
            own = LifecycleMachine(spec)  # the spec is loaded once; the Machine is not shared
            models.append((own, connected(own, config)))
        return models

    rows.append(
        summarize(
            group,
            f"NOT shared: one LifecycleMachine per model, {unshared}",
            unshared,
            [traced_bytes_per(unshared_models, unshared)],
            unit="B",
            reference="~45 KB",
        )
    )

    # Where an unshared machine's bytes go.
    def machines_only(count: int = unshared) -> list[object]:
        return [LifecycleMachine(spec) for _ in range(count)]

    def classifiers_only(count: int = unshared) -> list[object]:
        return [Classifier(spec.errors) for _ in range(count)]

    rows.append(
        summarize(
            group,
            "  of which: one LifecycleMachine alone",
            unshared,
            [traced_bytes_per(machines_only, unshared)],
            unit="B",
        )
    )
    rows.append(
        summarize(
            group,
            "  of which: its Classifier (error table lookups)",
            unshared,
            [traced_bytes_per(classifiers_only, unshared)],
            unit="B",
            note="status/close-code ranges expanded into dicts",
        )
    )
    return rows


# -- 5. raw trigger cost: transitions vs a dict FSM -------------------------------------------


class _NoOpModel:
    """A model for :class:`SpecMachine` whose callbacks do nothing: transitions' own cost."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state

    @property
    def exhausted(self) -> bool:
        return False

    def _on_enter(self, event_data: Any) -> None:
        return None

    def _on_exit(self, event_data: Any) -> None:
        return None

    def _on_transition(self, event_data: Any) -> None:
        return None

    def _on_reset_failures(self, event_data: Any) -> None:
        return None


class _BareModel:
    """A model ``transitions.Machine`` decorates with trigger methods (no callbacks)."""

    state: str


_DICT_TABLE: Final = {"A": {"go": "B"}, "B": {"back": "A"}}


class _DictFSM:
    """A hand-written dict-lookup FSM, the floor to compare with."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = "A"

    def fire(self, trigger: str) -> bool:
        dest = _DICT_TABLE[self.state].get(trigger)
        if dest is None:
            raise ValueError(f"{trigger!r} not allowed in {self.state}")
        self.state = dest
        return True


def bench_raw(plan: Plan, spec: Spec) -> list[Row]:
    group = "5 raw trigger"
    n = plan.batch
    rows: list[Row] = []

    tiny = SpecMachine(Spec.from_mapping(TINY_SPEC))

    def spec_machine_tiny() -> tuple[Callable[[], object], int]:
        model = _NoOpModel("A")
        fire = tiny.fire

        def batch() -> None:
            for _ in range(n // 2):
                fire(model, "opened", now=0.0, failure=None, reason="")
                fire(model, "rotate", now=0.0, failure=None, reason="")

        return batch, n // 2 * 2

    rows.append(
        summarize(
            group,
            "SpecMachine.fire, tiny spec, no-op callbacks",
            n,
            time_runs(spec_machine_tiny, plan),
            reference="~6 us",
            note="shared Machine, send_event, 4 callbacks by name",
        )
    )

    shared = SpecMachine(spec)

    def spec_machine_default() -> tuple[Callable[[], object], int]:
        model = _NoOpModel("CONNECTING")
        fire = shared.fire

        def batch() -> None:
            for _ in range(n // 3):
                fire(model, "opened", now=0.0, failure=None, reason="")
                fire(model, "lost", now=0.0, failure=None, reason="")
                fire(model, "retry", now=0.0, failure=None, reason="")

        return batch, n // 3 * 3

    rows.append(
        summarize(
            group,
            "SpecMachine.fire, default spec cycle, no-op callbacks",
            n,
            time_runs(spec_machine_default, plan),
            reference="~6 us",
        )
    )

    def bare_machine() -> tuple[Callable[[], object], int]:
        model = _BareModel()
        Machine(
            model=model,
            states=["A", "B"],
            transitions=[["go", "A", "B"], ["back", "B", "A"]],
            initial="A",
            auto_transitions=False,
        )
        go = model.go  # type: ignore[attr-defined]
        back = model.back  # type: ignore[attr-defined]

        def batch() -> None:
            for _ in range(n // 2):
                go()
                back()

        return batch, n // 2 * 2

    rows.append(
        summarize(
            group,
            "transitions.Machine trigger, bare (model.go())",
            n,
            time_runs(bare_machine, plan),
            reference="~6 us",
            note="no callbacks, no send_event",
        )
    )

    def dict_fsm() -> tuple[Callable[[], object], int]:
        model = _DictFSM()
        fire = model.fire

        def batch() -> None:
            for _ in range(n // 2):
                fire("go")
                fire("back")

        return batch, n // 2 * 2

    rows.append(
        summarize(
            group, "dict-lookup FSM fire()", n, time_runs(dict_fsm, plan), reference="~0.22 us"
        )
    )
    return rows


# -- output -----------------------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": affinity,
        # Other processes share these cores: a high load makes the figures noisier.
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "transitions": version("transitions"),
        "attrs": version("attrs"),
    }


def fmt(value: float, unit: str) -> str:
    if unit == "B":
        return f"{value / KIB:.2f} KiB"
    if value >= 1000:
        return f"{value / 1000:.2f} us"
    return f"{value:.0f} ns"


def fmt_target(row: Row) -> str:
    if row.target is not None:
        return f"<= {fmt(row.target, row.unit)}"
    return f"ref {row.reference}" if row.reference else "-"


def fmt_met(row: Row) -> str:
    met = row.met
    if met is None:
        return "n/a"
    return "met" if met else "NOT MET"


def render(rows: list[Row]) -> str:
    header = ("group", "name", "n", "median", "p90", "target", "met")
    table = [header] + [
        (
            row.group,
            row.name,
            f"{row.n:,}",
            fmt(row.median, row.unit),
            fmt(row.p90, row.unit),
            fmt_target(row),
            fmt_met(row),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for index, line in enumerate(table):
        lines.append(
            "  ".join(
                cell.rjust(width) if i in (2, 3, 4) else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = common.Parser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (< 1 min)")
    parser.add_argument(
        "--json", metavar="FILE", type=common.json_path, help="also write figures as JSON"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL

    facts = machine_facts()
    print("fsm_live core benchmark" + (" (--quick)" if args.quick else ""))
    for key, value in facts.items():
        print(f"  {key}: {value}")
    print(
        f"  runs: {plan.runs} after {plan.warmup} warm-up; median and p90 over runs; "
        "gc collected before and disabled during timing loops"
    )
    print()

    started = time.perf_counter()
    spec = Spec.default()
    machine = LifecycleMachine(spec)
    config = Config()
    failure = machine.classifier.classify(kind="refused", reason="connection refused")

    rows: list[Row] = []
    rows += bench_steps(plan, spec, machine, config)
    rows += bench_cycle(plan, machine, failure)
    rows += bench_memory(plan, spec, machine, config)
    rows += bench_raw(plan, spec)
    elapsed = time.perf_counter() - started

    print(render(rows))
    print(f"\n{elapsed:.1f} s")
    if args.json:
        payload = {
            "benchmark": "core",
            "quick": args.quick,
            "machine": facts,
            "method": {
                "runs": plan.runs,
                "warmup": plan.warmup,
                "gc_disabled_in_timing": True,
                "clock": "time.perf_counter_ns",
                "memory": "tracemalloc delta / models",
                "time_unit": "ns per operation",
                "memory_unit": "bytes per model",
            },
            "elapsed_s": round(elapsed, 2),
            "results": [row.as_json() for row in rows],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
