"""Benchmarks of dgm_course against the truth and against the peer libraries (zuko, nflows, normflows).

Run ``python -m benchmarks`` (everything, on a quiet machine) or ``python -m benchmarks --quick``
(a reduced run that checks it works). Outputs go to ``benchmarks/out/``: ``benchmarks.md`` (the
table, also printed), ``results.json`` (every number) and the plots. The peers come with the
``bench`` extra: ``pip install -e '.[bench]'``; a peer that is missing is reported as such.

Modules: :mod:`~benchmarks.peers` (the same architectures in each library),
:mod:`~benchmarks.fits` (KL to the truth and time per step, round robin),
:mod:`~benchmarks.cost` (linear flows' cost growth, the Jacobian check),
:mod:`~benchmarks.course` (notebook execution and autograding times), :mod:`~benchmarks.report`
(table and plots), :mod:`~benchmarks.parallel` (independent fits in worker processes),
:mod:`~benchmarks.run` (the entry point). :mod:`~benchmarks.ablation` (``python -m
benchmarks.ablation``) explains the rows where a peer is ahead: several training seeds, one
difference at a time; its findings are in ``benchmarks/ABLATION.md``.
"""
