import pytest

from .postgres_support import postgres_server, server_problem


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session (skips with the reason where none can start);
    ``postgres.create_database()`` gives each test a fresh gradebook's URL."""
    problem = server_problem()
    if problem:
        pytest.skip(problem)
    with postgres_server() as server:
        yield server
