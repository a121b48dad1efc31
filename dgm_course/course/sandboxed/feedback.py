"""nbgrader's feedback page of one autograded notebook, in a fresh sandbox of its own.

Its course folder holds the assignment's gradebook before any student with this student's final
scores (and nbgrader's comments) written in, the course's configuration, and templates and
Jupyter folders only from read-only places (the job folder and the installation): nothing the
student's kernel wrote is here. Writes one :mod:`protocol` frame: a head and the page.

Run as ``python {job}/feedback.py`` with ``FEEDBACK_JOB`` naming the job folder.
"""

from __future__ import annotations

import os
import shutil

try:
    from . import protocol
except ImportError:  # run as a script from its job folder, beside a copy of protocol.py
    import protocol


def main() -> None:  # pragma: no cover - runs in the sandbox
    job, cfg = protocol.job_config("FEEDBACK_JOB")
    results = protocol.result_channel()
    root = os.path.join(os.environ["HOME"], "course")
    shutil.copytree(os.path.join(job, "course"), root)

    from nbgrader.api import Gradebook
    from nbgrader.apps.api import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    aid, sid = cfg["assignment_id"], cfg["student_id"]
    head = {"error": "", "log": ""}
    page = b""
    try:
        config = PyFileConfigLoader("nbgrader_config.py", path=root).load_config()
        config.CourseDirectory.root = root
        config.CourseDirectory.db_url = f"sqlite:///{root}/gradebook.db"
        with Gradebook(config.CourseDirectory.db_url, cfg["course_id"]) as gb:
            gb.update_or_create_student(sid)
            gb.update_or_create_submission(aid, sid)
            submission = gb.find_submission_notebook(aid, aid, sid)
            for g in submission.grades:
                g.auto_score, g.manual_score = cfg["scores"].get(g.name, 0.0), None
                g.needs_manual_grade = g.name in cfg["needs_manual"]
            for c in submission.comments:
                c.auto_comment = cfg["comments"].get(c.name)
            gb.db.commit()
        result = NbGraderAPI(config=config).generate_feedback(aid, sid)
        head["log"] = (result.get("log", "") + result.get("error", ""))[-100_000:]
        if result["success"]:
            with open(os.path.join(root, "feedback", sid, aid, f"{aid}.html"), "rb") as fh:
                page = fh.read()
    except BaseException as exc:  # noqa: BLE001 - report anything, the grader decides
        head["error"] = f"{type(exc).__name__}: {exc}"[:500]
    protocol.finish(results, head, page)


if __name__ == "__main__":
    main()
