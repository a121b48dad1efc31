"""The nbgrader glue of the course: build, check and grade the notebooks.

The course folder and its notebooks:

- :mod:`dgm_course.course.config`: a course folder (the one holding ``nbgrader_config.py``) and
  its assignments; nbgrader's API on it.
- :mod:`dgm_course.course.cells`: the nbgrader metadata of a notebook's cells.
- :mod:`dgm_course.course.build`: the student release and the executed solution of each source
  notebook, and the check that the committed ones are in sync.

What runs in a student's kernel is not here but in :mod:`dgm_course.runtime` (the set-up cell,
the visible tests' helpers, the dense-algebra guard): the grader's worker carries all of the
library but this package.

Grading (docs/grading.md, docs/instructor.md):

- :mod:`dgm_course.course.grade`: autograde a folder of submissions, verified scores, feedback.
- :mod:`dgm_course.course.spec`: the spec contract (tasks, checks, verdicts, the grading seed),
  all that a spec in :mod:`dgm_course.course.specs` imports.
- :mod:`dgm_course.course.verify`: each task checked again outside the kernel, against its spec.
- :mod:`dgm_course.course.forbidden`: the static check that a task uses no library reference.
- :mod:`dgm_course.course.sandbox`: the isolated, limited process student code runs in.
- :mod:`dgm_course.course.sandboxed`: the programs that run inside it, as script files (the
  verifier's worker, nbgrader's autograde and feedback runs, the no-fork kernel), their framing
  and their seccomp filter.
- :mod:`dgm_course.course.cluster`: the fan-out of a batch, local threads or a Dask cluster.
- :mod:`dgm_course.course.gradebook`: where the final grades go (sqlite or a database server).
- :mod:`dgm_course.course.roster`: the roster, due dates and late penalties from the course's gradebook.
- :mod:`dgm_course.course.export`: every assignment's grades in one CSV, and per task.
- :mod:`dgm_course.course.report`: grades as text for a terminal.
- :mod:`dgm_course.course.cli` and :mod:`dgm_course.course.demo`: the ``dgm-course`` command on top.

Importing this package imports nothing heavy.
"""
