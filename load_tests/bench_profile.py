"""Where the worker's time goes: its main thread's time summarised by component.

Two sources (see `bench_worker.worker_rate`, which runs the worker over a batched backlog):
- py-spy (`summarise_samples`, the default of bench_pipeline): samples every thread of the running
  worker 200 times a second from outside, at full speed; idle samples are left out, and C functions
  (orjson, socket calls) are charged to their Python caller.
- cProfile (`summarise`): `python -m cProfile -o FILE -m pipeline.cli worker`. It counts calls but sees
  the event-loop thread only (the ClickHouse inserts run in the writer's own thread and show up as
  time the loop waits), and its overhead inflates code that makes many small calls (Faust, asyncio)
  more than code that makes few.

Both print the main thread's time grouped into components by the file each function lives in, the
inclusive time of the pipeline functions that matter, and the top functions by own time.
"""

from __future__ import annotations

import pstats
from pathlib import Path

# (component, substring of the function's file or name); the first match wins.
COMPONENTS = (
    (
        "idle: waiting in epoll (for Kafka, and for inserts in their thread)",
        "<method 'poll' of 'select.epoll",
    ),
    ("orjson (loads/dumps)", "orjson"),
    ("decode + validate (pipeline/events/decode, contract)", "pipeline/events/"),
    ("dedup + watermark + windows (pipeline/windows, stages)", "pipeline/windows/"),
    ("dedup + watermark + windows (pipeline/windows, stages)", "pipeline/stages/"),
    ("runtime glue (pipeline/runtime.py)", "pipeline/runtime.py"),
    ("state table writes (faust tables/stores, rocksdict)", "pipeline/faust/state_table.py"),
    ("runtime glue (pipeline/runtime.py)", "pipeline/faust/"),
    ("raw-event JSON rows + sink buffering (pipeline/sink)", "pipeline/sink/"),
    ("metrics (prometheus_client, pipeline/metrics)", "prometheus_client"),
    ("metrics (prometheus_client, pipeline/metrics)", "pipeline/metrics.py"),
    ("state table writes (faust tables/stores, rocksdict)", "faust/tables/"),
    ("state table writes (faust tables/stores, rocksdict)", "faust/stores/"),
    ("state table writes (faust tables/stores, rocksdict)", "rocksdict"),
    ("Faust streams/consumer/producer (faust, mode)", "site-packages/faust/"),
    ("Faust streams/consumer/producer (faust, mode)", "/mode/"),
    ("aiokafka client (fetch, record parsing, send)", "aiokafka"),
    ("clickhouse-connect (main-thread part)", "clickhouse_connect"),
    ("asyncio event loop + selectors", "asyncio"),
    ("asyncio event loop + selectors", "selectors"),
    ("asyncio event loop + selectors", "<method 'run' of '_contextvars"),
)

KEY_FUNCTIONS = (
    ("pipeline/runtime.py", "process_room_batch"),
    ("pipeline/runtime.py", "_write_room_checkpoints"),
    ("pipeline/stages/rooms.py", "process"),
    ("pipeline/events/decode.py", "decode_message"),
    ("pipeline/events/dedup.py", "is_duplicate"),
    ("pipeline/windows/aggregate.py", "add_partials"),
    ("pipeline/stages/rooms.py", "checkpoint"),
    ("pipeline/sink/batching.py", "put"),
    ("pipeline/sink/batching.py", "flush"),
    ("pipeline/runtime.py", "_write_state"),
    ("pipeline/runtime.py", "process_creator_batch"),
    ("pipeline/runtime.py", "_write_creator_checkpoints"),
    ("pipeline/stages/creators.py", "apply"),
    ("pipeline/stages/creators.py", "checkpoint"),
    ("faust/streams.py", "noack_take"),
)


def _component(filename: str, name: str) -> str:
    where = f"{filename} {name}"
    for label, needle in COMPONENTS:
        if needle in where:
            return label
    return "other"


def _component_table(title: str, seconds: dict[str, float], total_s: float, records: int) -> list[str]:
    """Markdown lines: the components by time, largest first, with their share and µs per record."""
    lines = ["", f"| {title} | s | share | µs per record |", "| --- | ---: | ---: | ---: |"]
    for label, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {label} | {s:.2f} | {s / total_s:.0%} | {s / records * 1e6:.2f} |")
    return lines


def summarise(profile: Path, records: int, top: int = 15) -> str:
    stats = pstats.Stats(str(profile))
    raw = stats.stats  # {(file, line, name): (primitive calls, calls, tottime, cumtime, callers)}
    total = sum(entry[2] for entry in raw.values())
    groups: dict[str, float] = {}
    for (filename, _, name), entry in raw.items():
        label = _component(filename, name)
        if label == "other" and filename == "~":
            # A builtin (dict.get, socket.send ...): charge its time to the components that called it.
            for (caller_file, _, caller_name), caller_stats in entry[4].items():
                caller = _component(caller_file, caller_name)
                groups[caller] = groups.get(caller, 0.0) + caller_stats[2]
            continue
        groups[label] = groups.get(label, 0.0) + entry[2]
    lines = [
        f"main thread, {total:.1f} s own time in total over {records:,} records "
        f"({total / records * 1e6:.2f} µs per record, profiler overhead included)",
        *_component_table("component (own time)", groups, total, records),
    ]
    lines += ["", "| function (inclusive) | calls | s | µs per record |", "| --- | ---: | ---: | ---: |"]
    for suffix, func in KEY_FUNCTIONS:
        for (filename, _, name), entry in raw.items():
            if filename.endswith(suffix) and name == func:
                short = f"{suffix.rsplit('/', 1)[-1]}:{func}"
                lines.append(f"| {short} | {entry[1]:,} | {entry[3]:.2f} | {entry[3] / records * 1e6:.2f} |")
    lines += [
        "",
        f"top {top} functions by own time:",
        "",
        "| function | calls | own s |",
        "| --- | ---: | ---: |",
    ]
    ranked = sorted(raw.items(), key=lambda kv: -kv[1][2])[:top]
    for (filename, line, name), entry in ranked:
        where = "/".join(Path(filename).parts[-2:]) if filename != "~" else ""
        lines.append(f"| `{where}:{line} {name}` | {entry[1]:,} | {entry[2]:.2f} |")
    return "\n".join(lines)


def summarise_samples(collapsed: Path, records: int, rate_hz: int = 200, top: int = 15) -> str:
    """The same summary from py-spy's collapsed stacks ("thread;frame;...;leaf COUNT" per line, idle
    samples excluded): busy time per thread, then the main thread's busy time by the component of its
    innermost Python frame, the inclusive time of KEY_FUNCTIONS, and the top innermost frames."""
    threads: dict[str, int] = {}
    groups: dict[str, int] = {}
    leaves: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = main = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        if not frames:
            continue
        total += count
        threads[thread] = threads.get(thread, 0) + count
        if "MainThread" not in thread:
            continue
        main += count
        leaf = frames[-1]
        groups[_component(leaf, "")] = groups.get(_component(leaf, ""), 0) + count
        leaves[leaf] = leaves.get(leaf, 0) + count
        for suffix, func in KEY_FUNCTIONS:
            if any(f"{func} (" in frame and suffix in frame for frame in frames):
                name = f"{suffix.rsplit('/', 1)[-1]}:{func}"
                inclusive[name] = inclusive.get(name, 0) + count

    def us(samples: int) -> str:
        return f"{samples / rate_hz / records * 1e6:.2f}"

    lines = [
        f"{total / rate_hz:.1f} s busy in all threads over {records:,} records ({us(total)} µs per record)",
        "",
        "| thread | busy s | µs per record |",
        "| --- | ---: | ---: |",
    ]
    for thread, n in sorted(threads.items(), key=lambda kv: -kv[1])[:6]:
        lines.append(f"| {thread} | {n / rate_hz:.2f} | {us(n)} |")
    seconds = {label: n / rate_hz for label, n in groups.items()}
    lines += _component_table("main thread: component (innermost frame)", seconds, main / rate_hz, records)
    lines += ["", "| main thread: function (inclusive) | s | µs per record |", "| --- | ---: | ---: |"]
    for name, n in inclusive.items():
        lines.append(f"| {name} | {n / rate_hz:.2f} | {us(n)} |")
    lines += ["", f"main thread: top {top} innermost frames:", "", "| frame | s |", "| --- | ---: |"]
    for leaf, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"| `{leaf}` | {n / rate_hz:.2f} |")
    return "\n".join(lines)
