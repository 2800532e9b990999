"""The classic live-chart job: ``sin`` and ``cos`` of time, sampled ``sampling_rate``
times a second, with a text line per sample, until stopped with Ctrl-C or aborted
from the run's page (``POST /v1/runs/{run}/abort``).

    pip install ./sdk/python
    export SEXTANT_URL=http://127.0.0.1:8080 SEXTANT_API_KEY=sxt_key_...
    python examples/sine_cosine.py --amplitude 2 --sampling-rate 10

Parameters ``amplitude`` and ``sampling_rate`` (and ``frequency``, in Hz) are the
run's params; each sample's step is its index and its timestamp the time it was taken.
"""

import argparse
import math
import os
import sys
import time

import sextant


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", default=os.environ.get("SEXTANT_PROJECT", "examples"))
    parser.add_argument("--name", default=None, help="run name (default: the server numbers it)")
    parser.add_argument("--amplitude", type=float, default=1.0)
    parser.add_argument("--sampling-rate", type=float, default=10.0, help="samples per second")
    parser.add_argument("--frequency", type=float, default=0.1, help="cycles per second")
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: until stopped)")
    args = parser.parse_args()

    run = sextant.init(
        project=args.project,
        name=args.name,
        tags=["example"],
        params={
            "amplitude": args.amplitude,
            "sampling_rate": args.sampling_rate,
            "frequency": args.frequency,
        },
    )
    try:
        with run:
            print("run {}: logging sin and cos; stop with Ctrl-C or abort the run".format(run.id))
            sys.stdout.flush()
            start = time.time()
            step = 0
            while args.duration is None or step / args.sampling_rate < args.duration:
                t = step / args.sampling_rate
                angle = 2 * math.pi * args.frequency * t
                sin, cos = args.amplitude * math.sin(angle), args.amplitude * math.cos(angle)
                run.log({"sin": sin, "cos": cos}, step=step)
                run.log_text("samples", "t={:.2f}s sin={:+.4f} cos={:+.4f}".format(t, sin, cos), step=step)
                step += 1
                time.sleep(max(0.0, start + step / args.sampling_rate - time.time()))
    except KeyboardInterrupt:
        # Leaving the `with` block on the interrupt ended the run as aborted.
        how = "aborted from the API" if run.abort_requested else "interrupted"
        print("run {} {} after {} samples".format(run.id, how, step))
        return 0 if run.abort_requested else 130
    print("run {} finished after {} samples".format(run.id, step))
    return 0


if __name__ == "__main__":
    sys.exit(main())
