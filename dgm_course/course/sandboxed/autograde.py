"""The in-kernel run: nbgrader's autograde of one submission (:func:`dgm_course.course.grade`).

Writes one :mod:`protocol` frame on its stdout: a head with the in-kernel scores and nbgrader's
comments as plain values, and the autograded notebook. The feedback page is made by another run
(``feedback.py``): this one's files are the kernel's to write.

Run as ``python {job}/autograde.py`` with ``AUTOGRADE_JOB`` naming the job folder, which holds
``job.json``, the course folder to grade in and ``nofork_kernel.py``, the notebook's kernel.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys

try:
    from . import protocol
except ImportError:  # run as a script from its job folder, beside a copy of protocol.py
    import protocol


def main() -> None:  # pragma: no cover - runs in the sandbox
    job, cfg = protocol.job_config("AUTOGRADE_JOB")
    # Not dumpable: the kernel runs as the same user but can neither ptrace this process nor
    # open its file descriptors (the result channel below) through /proc.
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
    results = protocol.result_channel()
    home = os.environ["HOME"]
    root = os.path.join(home, "course")
    shutil.copytree(os.path.join(job, "course"), root)
    if os.path.isdir(os.path.join(job, "mpl")):  # matplotlib's font list: no font scan in every run
        shutil.copytree(os.path.join(job, "mpl"), os.environ["MPLCONFIGDIR"], dirs_exist_ok=True)
    # The notebook's kernel: this interpreter, started through a launcher that forbids new processes.
    kernels = os.path.join(home, "jupyter", "kernels", cfg["kernel_name"])
    os.makedirs(kernels)
    with open(os.path.join(kernels, "kernel.json"), "w") as fh:
        json.dump({"argv": [sys.executable, os.path.join(job, "nofork_kernel.py"), "-f", "{connection_file}"],
                   "display_name": cfg["kernel_name"], "language": "python",
                   "metadata": {"supported_encryption": ["curve"]}}, fh)  # no plain-TCP warning
    os.environ["JUPYTER_PATH"] = os.path.join(home, "jupyter")

    from nbgrader.api import Gradebook
    from nbgrader.apps.api import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    aid, sid = cfg["assignment_id"], cfg["student_id"]
    head = {"autograded": False, "error": "", "log": "", "scores": {}, "needs_manual": [], "comments": {}}
    notebook = b""
    try:
        config = PyFileConfigLoader("nbgrader_config.py", path=root).load_config()
        config.CourseDirectory.root = root
        # Its own copy of the gradebook, whatever server the course's configuration names.
        config.CourseDirectory.db_url = f"sqlite:///{root}/gradebook.db"
        for key, value in cfg["config"].items():
            section, trait = key.split(".")
            config[section][trait] = value
        api = NbGraderAPI(config=config)
        result = api.autograde(aid, sid)
        head["log"] = (result.get("log", "") + result.get("error", ""))[-100_000:]
        if result["success"]:
            with Gradebook(f"sqlite:///{root}/gradebook.db", cfg["course_id"]) as gb:
                submission = gb.find_submission_notebook(aid, aid, sid)
                head["scores"] = {g.name: float(g.auto_score or 0.0) for g in submission.grades}  # never manual
                head["needs_manual"] = [g.name for g in submission.grades if g.needs_manual_grade]
                head["comments"] = {c.name: c.auto_comment for c in submission.comments if c.auto_comment}
            with open(os.path.join(root, "autograded", sid, aid, f"{aid}.ipynb"), "rb") as fh:
                notebook = fh.read()
            head["autograded"] = True
    except BaseException as exc:  # noqa: BLE001 - report anything, the grader decides
        head["error"] = f"{type(exc).__name__}: {exc}"[:500]
    protocol.finish(results, head, notebook)


if __name__ == "__main__":
    main()
