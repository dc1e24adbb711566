#!/usr/bin/env python3
"""Checks a TensorBoard event file written by switchc (train/tb_events.c) with TensorBoard's own readers.

Usage:
  scripts/check_tb_events.py FILE            # generic checks: readable, file_version, scalar tags, integer steps
  scripts/check_tb_events.py FILE --test     # also the exact values tests/test_metrics.c writes
                                             # (file: <build>/test_metrics_tmp/tb_check/events.out.tfevents.*)

Two readers are used: the raw record loader (event_file_loader, which verifies both masked CRC-32C values of every
TFRecord through TensorBoard's tensorflow stub) and EventAccumulator (what the TensorBoard UI uses for scalars).
Needs only the `tensorboard` package; the C build and tests never run this. Exit status 0 when every check passes.
"""
import argparse
import math
import sys

from tensorboard.backend.event_processing import event_accumulator, event_file_loader


def fail(msg):
    print(f"check_tb_events: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--test", action="store_true", help="expect the values written by tests/test_metrics.c")
    args = ap.parse_args()

    events = list(event_file_loader.LegacyEventFileLoader(args.file).Load())
    if not events:
        fail("no records")
    if events[0].file_version != "brain.Event:2":
        fail(f"first record file_version is {events[0].file_version!r}, expected 'brain.Event:2'")
    n_values = sum(len(e.summary.value) for e in events[1:])
    for e in events[1:]:
        if not e.HasField("summary"):
            fail(f"record at step {e.step} has no summary")
        for v in e.summary.value:
            if v.WhichOneof("value") != "simple_value":
                fail(f"tag {v.tag!r} at step {e.step} is not a simple_value")

    acc = event_accumulator.EventAccumulator(args.file, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    if not tags:
        fail("EventAccumulator found no scalar tags")
    scalars = {t: [(s.step, s.value) for s in acc.Scalars(t)] for t in tags}
    if sum(len(v) for v in scalars.values()) != n_values:
        fail(f"EventAccumulator returned {sum(len(v) for v in scalars.values())} scalars, file holds {n_values}")

    if args.test:
        want_loss = [(s, 3.0 - 0.1 * s) for s in range(10)]
        want_lr = [(s, 1e-4 * (s + 1)) for s in range(10)]
        if sorted(tags) != ["train/grad_norm", "train/loss", "train/lr"]:
            fail(f"tags {sorted(tags)}")
        for tag, want in (("train/loss", want_loss), ("train/lr", want_lr)):
            got = scalars[tag]
            if [s for s, _ in got] != [s for s, _ in want]:
                fail(f"{tag}: steps {[s for s, _ in got]}")
            # simple_value is a float32: relative rounding error at most 2^-24.
            worst = max(abs(g - w) / abs(w) for (_, g), (_, w) in zip(got, want))
            if worst > 6e-8:
                fail(f"{tag}: worst relative error {worst:g}")
        gn = scalars["train/grad_norm"]
        if len(gn) != 2 or gn[0][0] != 10 or not math.isnan(gn[0][1]) or gn[1] != (1 << 40, 2.5):
            fail(f"train/grad_norm: {gn}")

    summary = ", ".join(f"{t}: {len(v)} points, steps {v[0][0]}..{v[-1][0]}" for t, v in sorted(scalars.items()))
    print(f"check_tb_events: OK: {args.file}: {len(events)} records; {summary}")


if __name__ == "__main__":
    main()
