"""The nbgrader glue of the course: build, check and grade the notebooks.

The course folder and its notebooks:

- :mod:`dgm_course.course.config`: a course folder (the one holding ``nbgrader_config.py``) and
  its assignments; nbgrader's API on it.
- :mod:`dgm_course.course.cells`: the nbgrader metadata of a notebook's cells.
- :mod:`dgm_course.course.build`: the student release and the executed solution of each source
  notebook, and the check that the committed ones are in sync.

What runs in a student's kernel (the grader's worker carries a copy):

- :mod:`dgm_course.course.kernel`: the set-up every notebook calls in its first code cell.
- :mod:`dgm_course.course.checks`: the helpers of the visible tests.
- :mod:`dgm_course.runtime`: what a probe shares with the notebooks (the dense-algebra guard);
  the worker carries it whole.

Grading (docs/grading.md, docs/instructor.md):

- :mod:`dgm_course.course.grade`: autograde a folder of submissions, verified scores, feedback.
- :mod:`dgm_course.course.spec`: the spec contract (tasks, checks, verdicts, the grading seed),
  all that a spec in :mod:`dgm_course.course.specs` imports.
- :mod:`dgm_course.course.verify`: each task checked again outside the kernel, against its spec.
- :mod:`dgm_course.course.sandbox`: the isolated, limited process student code runs in.
- :mod:`dgm_course.course.cluster`: the fan-out of a batch, local threads or a Dask cluster.
- :mod:`dgm_course.course.gradebook`: where the final grades go (sqlite or a database server).
- :mod:`dgm_course.course.roster`: the roster, due dates and late penalties from the course's gradebook.
- :mod:`dgm_course.course.export`: every assignment's grades in one CSV, and per task.
- :mod:`dgm_course.course.report`: grades as text for a terminal.
- :mod:`dgm_course.course.cli` and :mod:`dgm_course.course.demo`: the ``dgm-course`` command on top.

Importing this package imports nothing heavy: notebooks import :mod:`.kernel` from it.
"""
