"""``dgm-course``: build, check and grade the course's notebooks with nbgrader.

    dgm-course build [ID ...] [--release-only]     release + executed solution (all when no ID)
    dgm-course check [ID ...] [--no-execute]       committed files in sync with the sources?
    dgm-course grade ID SUBMISSIONS [--out DIR] [--student SID ...] [--workers N | --cluster ADDRESS]
                     [--db-url URL]                verified grades, grades.csv, feedback
    dgm-course export [--out FILE] [--grading DIR] every assignment's grades in one CSV, and per task
    dgm-course demo                                build all, grade two sample students, print scores

Every command works in the course folder (``--course``, default: the working folder), the one that
holds ``nbgrader_config.py``. Exit status: 0 done; 1 out of sync (check) or a student the grader
itself failed on (grade: a row of status ``error``, to grade again; every other row is final);
2 an error to fix.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import Course, CourseError
from .report import format_summary

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dgm-course", description=__doc__.split("\n\n")[0])
    parser.add_argument("--course", default=".", help="the course folder, holding nbgrader_config.py (default: .)")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="write the release and the executed solution of assignments")
    build.add_argument("ids", nargs="*", metavar="ID", help="assignment ids (default: all)")
    build.add_argument("--release-only", action="store_true", help="do not execute the solution")

    check = sub.add_parser("check", help="are the committed release and solution in sync with the source?")
    check.add_argument("ids", nargs="*", metavar="ID", help="assignment ids (default: all)")
    check.add_argument("--no-execute", action="store_true",
                       help="do not run the solution: compare its cells, not its outputs (seconds)")

    grade = sub.add_parser("grade", help="autograde a folder of submissions")
    grade.add_argument("id", metavar="ID", help="the assignment id")
    grade.add_argument("submissions", type=Path,
                       help="folder with <student_id>/<ID>/<ID>.ipynb (nbgrader's 'submitted' layout)")
    grade.add_argument("--out", type=Path, help="grading folder (default: <course>/course_build/grading/<ID>)")
    grade.add_argument("--timeout", type=float, default=600, help="seconds per student (default: 600)")
    grade.add_argument("--workers", type=int, default=1,
                       help="students graded at once (default: 1; the grades do not depend on it)")
    grade.add_argument("--cluster", metavar="ADDRESS",
                       help="grade on a Dask cluster: a scheduler's address (tcp://host:8786), or local:N for a "
                            "LocalCluster of N worker processes (default: c.DgmCourseGrade.cluster, else --workers)")
    grade.add_argument("--db-url", metavar="URL",
                       help="the gradebook on a database server (postgresql://user@host/db; default: the course's "
                            "CourseDirectory.db_url, else DIR/gradebook.db)")
    grade.add_argument("--student", action="append", metavar="SID", dest="students",
                       help="grade only this student (again, or a late one), keeping everyone else's grades in "
                            "DIR; repeat it for several")

    export = sub.add_parser("export", help="every assignment's grades in nbgrader's CSV format, and per task")
    export.add_argument("--out", type=Path, help="the CSV (default: <course>/course_build/grades.csv); the "
                                                 "per-task table goes beside it as <name>_tasks.csv")
    export.add_argument("--grading", type=Path,
                        help="the folder of the grading folders, one per assignment (default: "
                             "<course>/course_build/grading)")
    export.add_argument("--db-url", metavar="URL", help="the course's gradebook on a database server")

    demo = sub.add_parser("demo", help="build everything, then grade two sample students and print the scores")
    demo.add_argument("--out", type=Path,
                      help="the demo's submissions and grading folders (default: <course>/course_build/demo)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        course = Course.load(args.course)
        if args.command == "build":
            from .build import build

            build(course, args.ids, solution=not args.release_only)
        elif args.command == "check":
            from .build import check

            problems = check(course, args.ids, execute=not args.no_execute)
            for problem in problems:
                print(f"out of sync: {problem}")
            if problems:
                return 1
            print("in sync: every release and solution equals a fresh build")
        elif args.command == "grade":
            from .grade import ERROR, grade

            out = args.out or course.root / "course_build" / "grading" / args.id
            rows = grade(course, args.id, args.submissions, out, timeout=args.timeout, workers=args.workers,
                         cluster=args.cluster, db_url=args.db_url, students=args.students)
            print(format_summary(rows, out / "grades.csv"))
            if any(row["status"] == ERROR for row in rows):
                return 1
        elif args.command == "export":
            from .export import export

            done = export(course, args.out or course.root / "course_build" / "grades.csv", args.grading, args.db_url)
            print(f"wrote {done.grades} (nbgrader's format) and {done.tasks} (per task)")
            if done.not_graded:
                print(f"not graded yet (left out): {', '.join(done.not_graded)}")
        elif args.command == "demo":
            from .demo import demo

            demo(course, args.out)
    except CourseError as err:
        print(f"dgm-course: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
