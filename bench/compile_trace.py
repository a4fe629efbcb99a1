"""Run ``fastmf ARGS`` in process and list every numba compilation it triggered (issue #14 item 1).

Run from the repository root, with an empty cache for a cold start::

    NUMBA_CACHE_DIR=$(mktemp -d) python -m bench.compile_trace fit --no-progress --solver als

Prints, on stderr after the command's own output: import and command seconds, the number of
specialisations compiled (all of them, and the top-level ones, i.e. not compiled as a callee
of another), and each compilation's seconds, depth and signature, slowest first.  Times
include the callees' compilations (a top-level entry's seconds cover its nested ones).
"""

from __future__ import annotations

import sys
import time


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    t0 = time.perf_counter()
    from numba.core import event

    recs, stack = [], []

    class _Listener(event.Listener):
        def on_start(self, ev):
            stack.append(time.perf_counter())

        def on_end(self, ev):
            seconds = time.perf_counter() - stack.pop()
            fn = getattr(ev.data.get("dispatcher"), "py_func", None)
            name = f"{fn.__module__}.{fn.__qualname__}" if fn is not None else str(ev.data.get("dispatcher"))
            recs.append((seconds, len(stack), name, str(ev.data.get("args"))[:120]))

    event.register("numba:compile", _Listener())
    from fastmf import cli

    t1 = time.perf_counter()
    rc = cli.main(argv)
    t2 = time.perf_counter()
    top = [r for r in recs if r[1] == 0]
    err = sys.stderr
    print(f"import {t1 - t0:.2f}s  command {t2 - t1:.2f}s  total {t2 - t0:.2f}s", file=err)
    print(f"compiled: {len(recs)} specialisations ({len(top)} top-level, "
          f"{sum(1 for r in top if r[2].startswith('fastmf'))} of them fastmf's), "
          f"top-level compile seconds {sum(r[0] for r in top):.1f}", file=err)
    for seconds, depth, name, sig in sorted(recs, reverse=True):
        print(f"  {seconds:7.2f}s depth{depth} {name} {sig}", file=err)
    return rc


if __name__ == "__main__":
    sys.exit(main())
