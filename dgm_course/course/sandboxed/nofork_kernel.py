"""The notebook's kernel of the in-kernel run: forbid new processes (:mod:`seccomp`), then be an
ordinary IPython kernel. nbgrader starts it through the ``kernel.json`` that ``autograde.py``
writes: ``python {job}/nofork_kernel.py -f CONNECTION_FILE``."""

from __future__ import annotations

import runpy
import sys

try:
    from . import seccomp
except ImportError:  # run as a script from its job folder, beside a copy of seccomp.py
    import seccomp


def main() -> None:  # pragma: no cover - runs in the sandbox
    seccomp.forbid_new_processes()
    sys.argv[0] = "ipykernel_launcher"
    runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
