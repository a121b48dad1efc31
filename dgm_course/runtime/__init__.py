"""What runs beside student code: in a student's kernel and in the grader's sandboxed worker.

- :mod:`dgm_course.runtime.guards`: a context in which torch's dense determinants, inverses and
  general solves raise (the tasks that ask for a log-det from its structure).

The grader's worker carries the whole of ``dgm_course`` but the grader (``dgm_course.course``), so
this package reaches it as it is. Importing it imports nothing heavy.
"""
