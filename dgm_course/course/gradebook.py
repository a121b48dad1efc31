"""Where the final grades go: nbgrader's gradebook, the grading folder's sqlite file or a database server.

By default each grading folder has its own ``gradebook.db`` (sqlite), made fresh by every run. A
course that outgrows one machine, or whose formgrader and several graders share one gradebook,
points nbgrader's ``CourseDirectory.db_url`` at a database server instead (PostgreSQL:
``postgresql://user@host:5432/dgm_course``), in the course's ``nbgrader_config.py`` or with
``dgm-course grade --db-url``. Such a gradebook holds the whole course, so grading never empties
it: it adds the assignment and updates each graded student's scores.

Several writers share a server gradebook (graders of other assignments or batches, the
formgrader), and nbgrader creates students and submissions by "find, else insert": two writers
that both miss the row both insert it, and one of them fails on the unique key. A write here is one
transaction that is tried again from the start on such a conflict, so no grade is lost. Only the
coordinating grader writes; the sandboxed runs get an sqlite copy of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .config import Course, CourseError

__all__ = ["ATTEMPTS", "server_url", "shown", "check_reachable", "write", "ensure_schema", "sqlite_url"]

ATTEMPTS = 6  # tries of one write (back-off 0.05 s doubling: about 3 s in all)
CONNECT_TIMEOUT_S = 10


def sqlite_url(out: Path) -> str:
    """The grading folder's own gradebook, nbgrader's default there."""
    return f"sqlite:///{Path(out) / 'gradebook.db'}"


def server_url(course: Course, db_url: str | None) -> str | None:
    """The database server of the gradebook (``db_url``, else the course's ``CourseDirectory.db_url``),
    or ``None`` for the grading folder's own sqlite file.

    An sqlite URL in the course's configuration is nbgrader's usual file next to the course: grading
    keeps its own file in the grading folder then, as always. Given explicitly it is refused: the
    option is for a server that graders and the formgrader share.
    """
    if db_url is not None:
        if db_url.startswith("sqlite"):
            raise CourseError(f"--db-url {db_url}: an sqlite gradebook is the grading folder's own gradebook.db; "
                              "--db-url is for a database server (postgresql://user@host/dbname)")
        return db_url
    configured = course.config.CourseDirectory.get("db_url")
    return configured if configured and not str(configured).startswith("sqlite") else None


def shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown up to its credentials
        return url.split("@")[-1]


def _engine(url: str):
    """An SQLAlchemy engine that gives up connecting after :data:`CONNECT_TIMEOUT_S`."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if url.startswith("postgresql") else {}
    try:
        return create_engine(url, connect_args=connect_args)
    except (ArgumentError, NoSuchModuleError) as err:
        raise CourseError(f"the gradebook URL {shown(url)} is not usable: {err}") from None
    except ImportError as err:
        raise CourseError(f"the gradebook {shown(url)} needs a database driver ({err.name}): "
                          "pip install -c requirements/constraints.txt '.[cluster]'") from None


def check_reachable(url: str) -> None:
    """Connect once, before any student is graded: a clear :class:`CourseError` if that fails."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    engine = _engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        first = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise CourseError(f"cannot reach the gradebook database {shown(url)}: {first}") from None
    finally:
        engine.dispose()


def _conflicts() -> tuple[type[BaseException], ...]:
    """What another writer's transaction can cause: a row it inserted first (nbgrader turns that
    into ``InvalidEntry``), a serialization failure, a dropped connection."""
    from nbgrader.api import InvalidEntry
    from sqlalchemy.exc import IntegrityError, OperationalError

    return InvalidEntry, IntegrityError, OperationalError


def write(url: str, course_id: str, action: Callable[[object], None], attempts: int | None = None,
          conflicts: tuple[type[BaseException], ...] = ()) -> None:
    """Run ``action(gradebook)`` and commit, as one transaction tried again on a conflict with
    another writer (and on ``conflicts``); the last failure is raised after ``attempts`` tries
    (default :data:`ATTEMPTS`)."""
    import warnings

    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    conflicts = _conflicts() + conflicts
    attempts = attempts or ATTEMPTS
    for attempt in range(attempts):
        gb = None
        try:
            with warnings.catch_warnings():
                # nbgrader's add_submission always warns about SQLAlchemy's autoflush; autograde does too.
                warnings.simplefilter("ignore", SAWarning)
                gb = Gradebook(url, course_id)
                action(gb)
                gb.db.commit()
            return
        except conflicts:
            if gb is not None:
                gb.db.rollback()
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2 ** attempt)
        finally:
            if gb is not None:
                gb.close()
                gb.engine.dispose()  # no pooled connection left open per write: servers cap them


def ensure_schema(url: str, course_id: str) -> None:
    """nbgrader's tables in the gradebook at ``url``, made if missing. Two graders that meet an
    empty database both create them at once and one fails on PostgreSQL's catalog
    (``pg_type_typname_nsp_index``, or ``DuplicateTable`` on nbgrader's ``alembic_version``): as any
    conflict, that is tried again, and then finds them made. Only here is a ``ProgrammingError`` a
    conflict: a table the other grader created between our check and our ``CREATE``."""
    from sqlalchemy.exc import ProgrammingError

    write(url, course_id, lambda gb: None, conflicts=(ProgrammingError,))
