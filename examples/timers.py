"""Timers: a repeating tick, a one-shot, and a timer that cancels another.

    python examples/timers.py --ticks 5
"""

import argparse

import cymongoose as cm


def main() -> None:
    parser = argparse.ArgumentParser(description="timers example")
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--interval-ms", type=int, default=200)
    args = parser.parse_args()
    ticks = []

    with cm.Manager() as mgr:
        def tick() -> None:
            ticks.append(cm.millis())
            print("tick %d" % len(ticks), flush=True)

        # Callbacks run on the poll thread, inside poll(); the Manager keeps the
        # Timer alive, so dropping the returned object is fine.
        repeating = mgr.timer_add(args.interval_ms, tick, repeat=True)
        mgr.timer_add(0, lambda: print("started", flush=True), run_now=True)
        mgr.timer_add(args.interval_ms * args.ticks + args.interval_ms // 2, repeating.cancel)

        while repeating.active:
            mgr.poll(50)
    print("done after %d ticks" % len(ticks))


if __name__ == "__main__":
    main()
