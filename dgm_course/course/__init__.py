"""The nbgrader glue of the course: build, check and grade the notebooks.

- :mod:`dgm_course.course.config`: a course folder (the one holding ``nbgrader_config.py``) and
  its assignments.
- :mod:`dgm_course.course.build`: the student release and the executed solution of each source
  notebook, and the check that the committed ones are in sync.
- :mod:`dgm_course.course.grade`: autograde a folder of submissions, one student per process.
- :mod:`dgm_course.course.kernel`: the set-up every notebook calls in its first code cell.
- :mod:`dgm_course.course.cli`: the ``dgm-course`` command on top.

Importing this package imports nothing heavy: notebooks import :mod:`.kernel` from it.
"""
