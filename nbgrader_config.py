# nbgrader configuration of the course. Every path is relative to the folder holding this file:
# the course root and the gradebook (gradebook.db) default to the working folder, so the same file
# serves the repository, a grading folder, and the temp courses of the tests.
c = get_config()  # noqa: F821 - provided by nbgrader's config loader

c.CourseDirectory.course_id = "dgm-course"
c.CourseDirectory.source_directory = "source_notebooks"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.solution_directory = "solutions"

# Autograding: a cell that runs longer than this is stopped and scores 0 (a solution cell takes
# seconds; the time budget of a whole notebook is 60 s on 2 cores).
c.Execute.timeout = 120
# Waiting for a cell's output messages: nbgrader's 4 s default fails a correct notebook on a loaded
# grading machine (Validate and autograde alike).
c.Execute.iopub_timeout = 30
# A deleted test cell is put back (and run) instead of silently losing its points.
c.OverwriteCells.add_missing_cells = True
# Output limits of autograded notebooks and feedback: a print loop cannot bloat them.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
# Kernels that nbgrader starts (solutions, autograding, Validate) talk to it over CurveZMQ-encrypted
# sockets: ipykernel warns "running over TCP without encryption" otherwise, in every log.
c.KernelManager.transport_encryption = "auto"
