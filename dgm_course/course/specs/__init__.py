"""Verification specs, one module per assignment: ``specs/<assignment_id>.py`` defines ``SPEC``.

A spec is an :class:`~dgm_course.course.spec.AssignmentSpec` listing each graded task of the
assignment's source notebook (see :class:`~dgm_course.course.spec.Task`):

- ``solution_ids`` and ``test_ids``: the nbgrader ``grade_id`` of its solution and test cells; the
  checks' points must add up to the test cells' points (checked against the source notebook);
- ``draw(rng)``: the inputs, drawn by the grader from the grading seed;
- ``probe(ns, inputs)``: a top-level function, shipped to the sandboxed worker as source, that
  calls the student's names in the notebook namespace ``ns`` and returns tensors; callables a task
  takes as an argument (the map whose Jacobian the student computes) are built here;
- ``expect(inputs)``: the grader's own values: a reference implementation and log-dets or
  Jacobians computed with :mod:`dgm_course.jacobian` on the *reference* map;
- ``checks``: which output is compared with which expected value, the points and the tolerances;
- ``forbidden``: library names that would answer the task (statically detected, 0 points), and
  the spec's ``hidden``: library modules or objects removed from the worker's copy of the library.
  ``hidden`` must cover every forbidden name (a spec that leaves one in reach is refused), so a
  probe must not use a forbidden name: it builds what it needs itself (02's probe composes its
  flows). A removed class or function leaves a stand-in that raises when used, so the set-up
  cells and the library's own modules may still import it.

A spec imports :mod:`dgm_course.course.spec` alone (and the library modules its references use).
The course's specs keep :class:`~dgm_course.course.spec.AssignmentSpec`'s defaults, which are the
course's convention: only the set-up cell ``setup`` runs (the locked cells after it plot and
train), 180 s for the whole submission, 60 s for the set-up, 10 s per student cell.

Probes run beside student code and may be fooled; that is harmless, because only the numbers they
return are graded, and only against values the grader computed itself.
"""
