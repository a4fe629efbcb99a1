"""Numba kernels of fastmf.

* :mod:`fastmf.kernels.csr` -- serial one-side passes over CSR layouts (user-major
  canonical triplets, item-major copy): loss + gradient, Hessian-vector products
  (``MFObjective(format="csr", parallel=False)``).
* :mod:`fastmf.kernels.coo` -- one serial fused pass over the canonical triplets.
* :mod:`fastmf.kernels.tiled` -- the parallel kernels of both formats over cache-tiled
  copies of the ratings: the fused COO pass with per-block item buffers reduced in a
  fixed order, and the CSR side passes (the same loops without the scatter).
* :mod:`fastmf.kernels.blocks` -- per-row Gauss-Newton blocks (block-Jacobi, ALS, Gibbs)
  and the Gauss-Newton diagonal (:func:`~fastmf.kernels.blocks.gn_diagonal_side`).
* :mod:`fastmf.kernels.predict` -- predictions, residuals, squared errors, RMSE: one
  prediction helper shared by the objective, the solvers and the estimator.
* :mod:`fastmf.kernels.sgd` -- the SGD solver's layout and epoch kernels.
* :mod:`fastmf.kernels._chunks` -- :func:`balanced_chunks`, the one row-chunking helper.

Kernels take raw arrays and assume valid input; :class:`fastmf.objective.MFObjective`
validates once and owns the buffers.
"""
