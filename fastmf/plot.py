"""Plots (matplotlib is an optional extra: ``pip install 'fastmf[plot]'``).

* :func:`plot_history`: training loss and validation RMSE against time (or
  iteration) for one or several runs, to compare solvers.
* :func:`plot_matrices`: for small data, the picture of the notebook fastmf grew
  from: the mask of observed cells, the observed ratings, the model's
  approximation and (for synthetic data) the planted truth, side by side.  This is
  the one place outside :mod:`fastmf.reference` that builds dense ``users x items``
  arrays, and it refuses data above ``max_users x max_items``.

matplotlib is imported lazily, inside the functions; figures are created with
``matplotlib.pyplot`` (which falls back to the non-interactive Agg backend when no
display is available) and closed after saving when ``path`` is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["plot_history", "plot_matrices"]

_LABELS = {
    "loss": "training loss",
    "val_rmse": "validation RMSE",
    "grad_norm": "gradient norm",
    "elapsed": "time (s)",
    "iteration": "iteration",
}


def _pyplot():
    try:
        import matplotlib  # noqa: F401  (an import check: the message below says how to install it)
    except ImportError as exc:
        raise ImportError(
            "fastmf.plot needs matplotlib: pip install 'fastmf[plot]' (or pip install matplotlib)"
        ) from exc
    import matplotlib.pyplot as plt

    return plt


def _history_of(run) -> list[dict]:
    """The list of iteration records of a model, a solver result or a list of records."""
    if hasattr(run, "history_"):
        return list(run.history_)
    if isinstance(run, dict) and "history" in run:
        return list(run["history"] or [])
    if isinstance(run, (list, tuple)) and all(isinstance(r, dict) for r in run):
        return list(run)
    raise TypeError(
        f"a run must be a fitted MatrixFactorization, a SolverResult or a list of iteration records; "
        f"got {type(run).__name__}"
    )


def _finish(fig, path, plt):
    if path is not None:
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"cannot save the plot to {path}: folder {path.parent} does not exist")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return fig


def plot_history(
    runs,
    labels: Sequence[str] | None = None,
    metrics: Sequence[str] = ("loss", "val_rmse"),
    x: str = "elapsed",
    *,
    logy: Sequence[str] = ("loss", "grad_norm"),
    ax=None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Metrics against time or iteration, one panel per metric, one line per run.

    Parameters
    ----------
    runs : run or list of runs
        A run is a fitted :class:`~fastmf.model.MatrixFactorization`, a
        :class:`~fastmf.solvers._base.SolverResult` or a list of iteration records
        (dicts).  A list of dicts is read as *one* run.
    labels : list of str, optional
        Legend label of each run (default ``run 0``, ``run 1``... or the model's
        solver name).
    metrics : sequence of str
        Record keys to plot (``"loss"``, ``"val_rmse"``, ``"grad_norm"``...).  A
        metric absent (or ``None``) in every run is skipped, with its panel.
    x : {"elapsed", "iteration"}
    logy : sequence of str
        Metrics drawn on a log scale (when all values are positive).
    ax : matplotlib Axes or sequence of Axes, optional
        Where to draw (one per plotted metric); default a new figure.
    path : path, optional
        Save the figure there (PNG, PDF, SVG... by extension).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ImportError
        matplotlib is not installed.
    ValueError
        Bad ``x``, mismatched ``labels``, or nothing to plot.
    """
    if x not in ("elapsed", "iteration"):
        raise ValueError(f"x must be 'elapsed' or 'iteration', got {x!r}")
    if isinstance(runs, (list, tuple)) and runs and all(isinstance(r, dict) for r in runs) and not any(
            "history" in r for r in runs):
        runs = [runs]
    elif not isinstance(runs, (list, tuple)):
        runs = [runs]
    if not runs:
        raise ValueError("no runs to plot")
    histories = [_history_of(r) for r in runs]
    if labels is None:
        labels = [getattr(r, "solver", None) or f"run {j}" for j, r in enumerate(runs)]
    labels = list(labels)
    if len(labels) != len(histories):
        raise ValueError(f"{len(labels)} labels for {len(histories)} runs")
    if isinstance(metrics, str):
        metrics = (metrics,)
    present = [m for m in metrics if any(rec.get(m) is not None for h in histories for rec in h)]
    if not present:
        raise ValueError(f"none of the metrics {list(metrics)} is recorded in the runs' histories")
    plt = _pyplot()
    if ax is None:
        fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.8), squeeze=False, layout="constrained")
        axes = list(axes[0])
    else:
        axes = list(np.atleast_1d(ax))
        if len(axes) != len(present):
            raise ValueError(f"ax has {len(axes)} axes for {len(present)} metrics {present}")
        fig = axes[0].figure
    for a, metric in zip(axes, present):
        positive = True
        for h, label in zip(histories, labels):
            pts = [(rec.get(x), rec.get(metric)) for rec in h if rec.get(metric) is not None and rec.get(x) is not None]
            if not pts:
                continue
            xs, ys = zip(*pts)
            positive &= all(v > 0 for v in ys)
            a.plot(xs, ys, marker="o", markersize=3, label=label)
        if metric in logy and positive:
            a.set_yscale("log")
        a.set_xlabel(_LABELS.get(x, x))
        a.set_ylabel(_LABELS.get(metric, metric))
        a.grid(True, alpha=0.3)
        a.legend()
    if title:
        fig.suptitle(title)
    return _finish(fig, path, plt)


def _truth_dense(truth, m: int, n: int) -> np.ndarray:
    if isinstance(truth, dict):
        try:
            P, Q = np.asarray(truth["P"]), np.asarray(truth["Q"])
        except KeyError as exc:
            raise ValueError("truth dict must hold 'P' and 'Q' (as returned by synthetic(return_truth=True))") from exc
        dense = P @ Q.T + float(truth.get("mean", 0.0))
        if truth.get("user_bias") is not None:
            dense = dense + np.asarray(truth["user_bias"])[:, None]
        if truth.get("item_bias") is not None:
            dense = dense + np.asarray(truth["item_bias"])[None, :]
    else:
        dense = np.asarray(truth, dtype=np.float64)
    if dense.shape != (m, n):
        raise ValueError(f"truth has shape {dense.shape}, the ratings have shape {(m, n)}")
    return dense


def plot_matrices(
    ratings,
    model=None,
    truth=None,
    *,
    max_users: int = 500,
    max_items: int = 2000,
    clip: bool = True,
    cmap: str = "viridis",
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Mask, observed ratings, the model's approximation and the truth, side by side.

    Parameters
    ----------
    ratings : Ratings
        Small data: at most ``max_users`` users and ``max_items`` items.
    model : fitted MatrixFactorization, optional
        Its predictions over every (user, item) cell of ``ratings`` (by raw id;
        ids unknown to the model follow its ``unknown`` policy).
    truth : dict or ndarray, optional
        The planted model of :func:`fastmf.data.synthetic.synthetic` with
        ``return_truth=True`` (``P``, ``Q``, ``user_bias``, ``item_bias``,
        ``mean``), or a dense ``(n_users, n_items)`` array.
    max_users, max_items : int
        Refuse larger data (a ``ValueError``): these plots are dense.
    clip : bool
        Clip the approximation to the rating scale.
    path : path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per picture (2 to 4).
    """
    import warnings

    from .data.ratings import Ratings
    from .exceptions import UnknownIdWarning

    if not isinstance(ratings, Ratings):
        raise TypeError(f"ratings must be a fastmf Ratings, got {type(ratings).__name__}")
    m, n = ratings.shape
    if m > max_users or n > max_items:
        raise ValueError(
            f"plot_matrices draws dense pictures: {m} users x {n} items exceeds max_users={max_users}, "
            f"max_items={max_items}; plot a subset of the ratings or raise the limits"
        )
    panels: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    panels.append(("mask (observed cells)", ratings.mask(), {"cmap": "Greys", "vmin": 0, "vmax": 1}))
    observed = ratings.to_dense(fill_value=np.nan).astype(np.float64)
    low, high = ratings.rating_scale or (float(np.nanmin(observed)), float(np.nanmax(observed)))
    scale = {"cmap": cmap, "vmin": low, "vmax": high}
    panels.append(("observed ratings", observed, scale))
    if model is not None:
        uu = np.repeat(ratings.user_ids, n)
        ii = np.tile(ratings.item_ids, m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnknownIdWarning)
            approx = np.asarray(model.predict(uu, ii, clip=clip), dtype=np.float64).reshape(m, n)
        panels.append((f"approximation (rank {model.user_factors_.shape[1]})", approx, scale))
    if truth is not None:
        panels.append(("truth", _truth_dense(truth, m, n), scale))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.0), squeeze=False, layout="constrained")
    for a, (name, img, kw) in zip(axes[0], panels):
        im = a.imshow(img, aspect="auto", interpolation="nearest", **kw)
        a.set_title(name)
        a.set_xlabel("item")
        a.set_ylabel("user")
        fig.colorbar(im, ax=a, shrink=0.85)
    if title:
        fig.suptitle(title)
    return _finish(fig, path, plt)
