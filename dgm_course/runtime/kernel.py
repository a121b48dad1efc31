"""The set-up every course notebook runs in its first (locked) code cell.

Autograding scores a test cell 0 as soon as anything reaches stderr, and a solution must give the
same outputs on every run. :func:`setup_notebook` therefore

- fixes the seeds (``random``, NumPy, torch) and torch's thread count: results of threaded
  reductions depend on it, and with more than one thread the CPU build's batched LU (``slogdet``,
  ``det``, ``solve``, ``inv`` of a batch of matrices larger than about 128 x 128) calls MKL from
  several threads at once and returns wrong values (pytorch/pytorch#142815);
- routes everything written to stderr (Python warnings, progress bars, C-level messages) to
  stdout, where it is still visible but cannot zero a correct student's test cell;
- prints tensors and arrays with 4 decimals, so outputs do not depend on the last bits of a
  float, which may differ between CPUs;
- shows figures inline as PNG.

The set-up cell of every notebook (it changes process-wide state, hence no doctest)::

    from dgm_course.runtime.kernel import setup_notebook
    setup_notebook(seed=0)
"""

from __future__ import annotations

import os
import random
import sys

__all__ = ["setup_notebook", "route_stderr_to_stdout"]


def route_stderr_to_stdout() -> None:
    """Send what Python code and C code write to stderr to stdout instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    # Python-level writes (warnings, tqdm, logging) go through sys.stderr ...
    sys.stderr = sys.stdout
    # ... C-level writes (torch, OpenMP) go to file descriptor 2: point it at fd 1, which the
    # Jupyter kernel captures as stdout.
    try:
        os.dup2(1, 2)
    except OSError:  # no file descriptors (an unusual embedding): Python-level routing still holds
        pass


def setup_notebook(seed: int = 0, threads: int = 1, route_stderr: bool = True) -> None:
    """Make a notebook reproducible and safe to autograde; call it once, in the set-up cell.

    Args:
        seed: seed of ``random``, NumPy and torch's global generators.
        threads: torch's intra-op threads. Pass 2 only in a notebook that never runs a batched
            LU (see the module docstring) and needs the speed.
        route_stderr: send stderr to stdout (see the module docstring).
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.set_printoptions(precision=4, sci_mode=False)
    np.set_printoptions(precision=4, suppress=True)
    from IPython import get_ipython

    ipython = get_ipython()
    if ipython is not None:
        # An MPLBACKEND=Agg inherited from a shell would hide every figure.
        ipython.run_line_magic("matplotlib", "inline")
    if route_stderr:
        route_stderr_to_stdout()
