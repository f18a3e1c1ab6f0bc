"""The command line's deferred scipy.stats: not loaded by importing the CLI and scikit-learn's
mixture, loaded on first real use, and the same module to its users then."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_scipy_stats_waits_for_first_use() -> None:
    out = run_fresh(
        """
        import inspect, sys
        import kbengine.cli
        from kbengine.cli.deferred import DeferredModule
        import numpy as np
        from retrieval.sampling import kde_sample
        kde_sample(np.r_[np.linspace(0.8, 0.9, 10), np.linspace(0.1, 0.3, 40)], 5)
        inspect.getmodule(kde_sample)  # reads every module's __file__
        assert isinstance(sys.modules["scipy.stats"], DeferredModule)
        assert "scipy.stats._stats_py" not in sys.modules
        from sklearn.metrics._ranking import rankdata  # handed out before the module loads
        print(rankdata([30, 10, 20]).tolist())
        import scipy.stats
        print(scipy.stats.norm.cdf(0.0), scipy.stats.rankdata([2, 1]).tolist())
        from scipy.stats import chi2
        print(round(float(chi2.sf(3.84, 1)), 3), "scipy.stats._stats_py" in sys.modules)
        """
    )
    assert out.splitlines() == ["[3.0, 1.0, 2.0]", "0.5 [2.0, 1.0]", "0.05 True"]


def test_a_module_imported_before_is_left_alone() -> None:
    out = run_fresh(
        """
        import sys
        import scipy.stats
        real = sys.modules["scipy.stats"]
        import kbengine.cli
        print(sys.modules["scipy.stats"] is real)
        """
    )
    assert out == "True"
