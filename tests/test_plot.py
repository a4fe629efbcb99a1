"""fastmf.plot: history curves and small-data matrix pictures, rendered to PNG files."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from fastmf.data.synthetic import synthetic  # noqa: E402
from fastmf.model import MatrixFactorization  # noqa: E402
from fastmf.plot import plot_history, plot_matrices  # noqa: E402

FAST = dict(rank=3, max_iter=3, progress=False, random_state=0)

pytestmark = pytest.mark.filterwarnings("ignore:.*did not converge:UserWarning")


@pytest.fixture(scope="module")
def small():
    return synthetic(30, 20, 300, rank=2, random_state=1, return_truth=True)


@pytest.fixture(scope="module")
def runs(small):
    r, _ = small
    return [MatrixFactorization(solver=s, **FAST).fit(r, eval_set=r) for s in ("als", "sgd")]


def image_axes(fig):
    return [a for a in fig.axes if a.images]


def line_axes(fig):
    return [a for a in fig.axes if a.lines]


def test_plot_history_several_runs(runs, tmp_path):
    path = tmp_path / "h.png"
    fig = plot_history(runs, labels=["als", "sgd"], path=path)
    assert path.stat().st_size > 1000
    axes = line_axes(fig)
    assert len(axes) == 2 and [a.get_ylabel() for a in axes] == ["training loss", "validation RMSE"]
    assert all(len(a.lines) == 2 for a in axes)
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["als", "sgd"]
    # x is elapsed time: the plotted x values are the records' elapsed values
    xs = axes[1].lines[1].get_xdata()
    np.testing.assert_allclose(xs, [r["elapsed"] for r in runs[1].history_ if r.get("val_rmse") is not None])


def test_plot_history_inputs(runs, tmp_path):
    # a SolverResult, a list of records (one run), iteration on x, default labels
    fig = plot_history(runs[0].result_, metrics=("loss",), x="iteration")
    assert len(line_axes(fig)) == 1 and fig.axes[0].get_xlabel() == "iteration"
    fig = plot_history(runs[1].history_, metrics="val_rmse")
    assert len(line_axes(fig)) == 1
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["run 0"]
    # metrics absent everywhere are skipped; if none is present: error
    fig = plot_history(runs[1], metrics=("loss", "grad_norm"))
    assert len(line_axes(fig)) == 1
    with pytest.raises(ValueError, match="none of the metrics"):
        plot_history(runs[1], metrics=("no_such_metric",))
    with pytest.raises(ValueError, match="labels"):
        plot_history(runs, labels=["only one"])
    with pytest.raises(ValueError, match="x must be"):
        plot_history(runs, x="wallclock")
    with pytest.raises(TypeError, match="run must be"):
        plot_history([object()])


def test_plot_history_on_given_axes(runs):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2)
    out = plot_history(runs, ax=axes)
    assert out is fig and all(a.lines for a in axes)
    with pytest.raises(ValueError, match="axes"):
        plot_history(runs, ax=axes[:1])
    plt.close(fig)


def test_plot_matrices_with_truth(small, runs, tmp_path):
    r, truth = small
    path = tmp_path / "m.png"
    fig = plot_matrices(r, runs[0], truth, path=path)
    assert path.stat().st_size > 1000
    panels = image_axes(fig)
    assert [a.get_title() for a in panels] == ["mask (observed cells)", "observed ratings",
                                               "approximation (rank 3)", "truth"]
    mask = panels[0].images[0].get_array()
    assert mask.shape == r.shape and int(np.asarray(mask).sum()) == r.nnz
    approx = np.asarray(panels[2].images[0].get_array())
    expect = runs[0].predict(np.repeat(r.user_ids, r.n_items), np.tile(r.item_ids, r.n_users)).reshape(r.shape)
    np.testing.assert_allclose(approx, expect)
    dense_truth = truth["P"] @ truth["Q"].T + truth["mean"] + truth["user_bias"][:, None] + truth["item_bias"][None]
    np.testing.assert_allclose(np.asarray(panels[3].images[0].get_array()), dense_truth)


def test_plot_matrices_minimal_and_limits(small):
    r, truth = small
    assert len(image_axes(plot_matrices(r))) == 2
    with pytest.raises(ValueError, match="max_users"):
        plot_matrices(r, max_users=10)
    with pytest.raises(ValueError, match="shape"):
        plot_matrices(r, truth=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="'P' and 'Q'"):
        plot_matrices(r, truth={"mean": 3.0})
    with pytest.raises(TypeError, match="Ratings"):
        plot_matrices(np.zeros((3, 3)))


def test_missing_matplotlib_message(runs, monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'fastmf\[plot\]'"):
        plot_history(runs)


def test_plot_history_saving_to_missing_folder(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_history(runs, path=tmp_path / "nope" / "h.png")
