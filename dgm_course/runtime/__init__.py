"""What runs beside student code: in a student's kernel and in the grader's sandboxed worker.

- :mod:`dgm_course.runtime.kernel`: the set-up every notebook calls in its first code cell.
- :mod:`dgm_course.runtime.checks`: the helpers of the visible tests (messages that say what is
  wrong, and the early warning against a forbidden library reference).
- :mod:`dgm_course.runtime.guards`: a context in which torch's dense determinants, inverses and
  general solves raise (the tasks that ask for a log-det from its structure).

The grader's worker carries the whole of ``dgm_course`` but the grader (``dgm_course.course``), so
this package reaches it as it is; nothing here imports the grader at import time (the early
warning reads a spec when it is called, and says nothing where the grader is absent). Importing
it imports nothing heavy.
"""
