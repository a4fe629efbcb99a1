"""Numba kernels of fastmf.

* :mod:`fastmf.kernels.csr` -- one-side passes over CSR layouts (user-major canonical
  triplets, item-major copy): loss + gradient, Hessian-vector products, diagonal of
  the Gauss-Newton matrix, residuals; serial and parallel (``prange`` over chunks of
  equal rating count, bit-identical to serial).  ``MFObjective`` uses the serial ones
  with ``parallel=False``; its parallel CSR path runs :mod:`fastmf.kernels.tiled`.
* :mod:`fastmf.kernels.coo` -- one serial pass over the canonical triplets.
* :mod:`fastmf.kernels.tiled` -- the parallel kernels of both formats over cache-tiled
  copies of the ratings: the fused COO pass with per-block item buffers reduced in a
  fixed order, and the CSR side passes (the same loops without the scatter).
* :mod:`fastmf.kernels._chunks` -- :func:`balanced_chunks` load balancing.
* :mod:`fastmf.kernels.predict` -- prediction / RMSE (shared with the solvers).

Kernels take raw arrays and assume valid input; :class:`fastmf.objective.MFObjective`
validates once and owns the buffers.
"""
