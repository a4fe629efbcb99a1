"""Cost of thread-count-independent COO reductions (issue #14 item 6), paired in one process.

The parallel COO objective (:class:`fastmf.objective.MFObjective`, ``format="coo"``) cuts the
users into fixed blocks, each with an item buffer reduced in block order: by default one block
per thread of numba's pool (``NUMBA_NUM_THREADS``), or ``coo_blocks=B``.  This times
``fun_and_jac`` and the exact ``hessp`` on an ML-20M-shaped synthetic set:

* at ``--threads`` threads: ``coo_blocks`` = 4, 8, 16 against the default cut;
* at 1 thread: the default cut (pool-size blocks run by one thread) against ``coo_blocks=1``
  (what a 1-thread call used before: one block per thread of the call);

each as the median over ``--repeat`` interleaved rounds of the paired time ratio, and checks
that the default cut gives bit-identical results at 1 and ``--threads`` threads.

    python -m bench.coo_blocks [--scale 0.25] [--threads 2] [--repeat 9]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def _time(objs, x, v, repeat):
    times = {name: {"loss+gradient": [], "Hessian product": []} for name in objs}
    for rep in range(repeat):
        x2 = x + np.float32(1e-6 * (rep + 1))  # a new x each round: no cached loss
        for name, o in objs.items():
            t = time.perf_counter()
            o.fun_and_jac(x2)
            times[name]["loss+gradient"].append(time.perf_counter() - t)
            t = time.perf_counter()
            o.hessp(x2, v)
            times[name]["Hessian product"].append(time.perf_counter() - t)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.25, help="of the ML-20M preset (0.25: 5M ratings)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--rank", type=int, default=32)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import numba

    from fastmf.data.synthetic import synthetic_preset
    from fastmf.objective import MFObjective

    R = synthetic_preset("ml-20m", scale=args.scale, random_state=0)
    print(f"ML-20M shape x {args.scale}: {R.nnz:,} ratings, rank {args.rank}, float32, numba pool "
          f"{numba.config.NUMBA_NUM_THREADS}, load {os.getloadavg()[0]:.1f}")

    def obj(blocks, threads):
        return MFObjective(R, args.rank, reg=0.1, dtype=np.float32, hessian="exact", coo_blocks=blocks,
                           n_threads=threads, parallel=True)

    base = obj(None, args.threads)
    x = base.x0(0)
    v = np.random.default_rng(0).standard_normal(x.shape[0]).astype(np.float32)
    runs = [(f"{args.threads} threads", {"default": base, **{f"B={b}": obj(b, args.threads) for b in (4, 8, 16)}}),
            ("1 thread", {"B=1": obj(1, 1), "default": obj(None, 1)})]
    for label, objs in runs:
        for o in objs.values():  # build tiles and buffers, load the kernels
            o.fun_and_jac(x)
            o.hessp(x, v)
        times = _time(objs, x, v, args.repeat)
        ref = "default" if label != "1 thread" else "B=1"
        for name in objs:
            if name == ref:
                continue
            for kern, ts in times[name].items():
                ratio = np.median(np.array(ts) / np.array(times[ref][kern]))
                print(f"{label}: {name} / {ref}, {kern}: {ratio:.3f} (median {1e3 * np.median(ts):.1f} ms "
                      f"vs {1e3 * np.median(times[ref][kern]):.1f} ms)")
    outs = []
    for t in (1, args.threads):
        o = obj(None, t)
        f, g = o.fun_and_jac(x)
        outs.append((f, g.copy(), o.hessp(x, v).copy()))
    same = outs[0][0] == outs[1][0] and all(np.array_equal(a, b) for a, b in zip(outs[0][1:], outs[1][1:]))
    print(f"default cut, 1 vs {args.threads} threads: {'bit-identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
