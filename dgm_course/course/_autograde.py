"""Child process of :func:`dgm_course.course.grade.grade`: autograde one student and write feedback.

Usage: ``python -m dgm_course.course._autograde COURSE GRADING_FOLDER ASSIGNMENT STUDENT REPORT``.
It writes the JSON report ``{"autograded": bool, "feedback": bool, "error": str, "log": str}`` to
the file REPORT (not to stdout, where a kernel may echo a student's output).
Running nbgrader here, not in the grading process, means a submission that hangs or crashes
nbgrader costs only this process.
"""

from __future__ import annotations

import json
import re
import sys

# The last line of a Python traceback, "module.Error: message"; nbgrader's own wrapper says nothing.
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit)\b.*$", re.MULTILINE)


def _reason(text: str) -> str:
    lines = [m.group(0) for m in _ERROR_LINE.finditer(text) if "NbGraderException" not in m.group(0)]
    return lines[-1][:300] if lines else "see the log"


def main(argv: list[str]) -> int:
    from .config import Course, execution_env, nbgrader_api

    course_root, grading_root, assignment_id, student_id, report_path = argv
    report = {"autograded": False, "feedback": False, "error": "", "log": ""}
    with execution_env():
        api = nbgrader_api(Course.load(course_root), grading_root)
        for step, run in [("autograded", lambda: api.autograde(assignment_id, student_id)),
                          ("feedback", lambda: api.generate_feedback(assignment_id, student_id))]:
            result = run()
            report["log"] += result.get("log", "")
            if not result["success"]:
                report["log"] += result.get("error", "")
                report["error"] = _reason(report["log"])
                break
            report[step] = True
    with open(report_path, "w") as fh:
        json.dump(report, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
