"""Shared fixtures: a fresh SQLite file per test, a real PostgreSQL server started once per session, and
`baobab serve` on the embedded model on a loopback port."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fault_server.py, beside this file
from fault_server import FaultServer

PG_BIN = Path("/usr/lib/postgresql/15/bin")


STORE_ENV = "BAOBAB_TEST_DB"  # "postgres": every store_url is a PostgreSQL database (.ci/run's last step)


@pytest.fixture(scope="session", autouse=True)
def baobab_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The engine's disk cache (converted weights, measured costs) in a fresh directory for the whole run, for
    this process and the ones it starts: tests never read or fill the user's cache."""
    path = tmp_path_factory.mktemp("baobab-cache")
    previous = os.environ.get("BAOBAB_CACHE")
    os.environ["BAOBAB_CACHE"] = str(path)
    yield path
    if previous is None:
        del os.environ["BAOBAB_CACHE"]
    else:
        os.environ["BAOBAB_CACHE"] = previous


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database for the test: a SQLite file, or with $BAOBAB_TEST_DB=postgres a PostgreSQL database."""
    if os.environ.get(STORE_ENV) == "postgres":
        url: str = request.getfixturevalue("postgres_db")
        return url
    return f"sqlite:///{tmp_path / 'test.db'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With $BAOBAB_TEST_DB=postgres, only the tests that take a store_url run (the others run on SQLite or
    on both databases already): pytest reports the rest as deselected."""
    if os.environ.get(STORE_ENV) != "postgres":
        return
    kept = [item for item in items if "store_url" in getattr(item, "fixturenames", ())]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL on 127.0.0.1 (the server runs as the `postgres` OS user)."""
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        if os.environ.get("BAOBAB_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL binaries not found in {PG_BIN}; .ci/run installs them")
        pytest.skip(f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql to run these)")
    base = Path(tempfile.mkdtemp(prefix="baobab-pg-"))
    shutil.chown(base, "postgres", "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, str(PG_BIN / "initdb"), "-D", str(base / "db"), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True)
    # each test's stores keep their pooled connections until collected: 100 (the default) ran out in .ci/run's step 3
    subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(base / "db"), "-l", str(base / "log"), "-w", "-o",
                    f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c max_connections=500", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_pg, str(PG_BIN / "pg_ctl"), "-D", str(base / "db"), "-m", "immediate", "stop"],
                       capture_output=True)
        time.sleep(0.1)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database Baobab supports; a PostgreSQL test gets its own fresh database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url: str = request.getfixturevalue("postgres_db")
    return url


@pytest.fixture
def postgres_db(request: pytest.FixtureRequest, postgres_url: str) -> str:
    """A fresh, empty database of its own on the session's PostgreSQL server."""
    server = postgres_url
    import sqlalchemy

    name = f"t{abs(hash(request.node.nodeid)) % 10**12}"
    engine = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def port_finder() -> Callable[[], int]:
    """Finds free loopback ports (a function, so fixtures of any scope can use it)."""
    return free_port


def wait_until_serving(proc: subprocess.Popen[str], url: str, *, headers: dict[str, str] | None = None,
                       timeout: float = 60) -> None:
    """Poll `url` until it answers 200; fail with the server's output if it exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(url, headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{proc.args} did not answer {url} in {timeout} s"
        time.sleep(0.2)


@pytest.fixture(scope="session")
def serving() -> Callable[..., None]:
    """`wait_until_serving`, for tests and fixtures (conftest modules cannot be imported)."""
    return wait_until_serving


@contextlib.contextmanager
def served(options: list[str], log: Path) -> Iterator[tuple[str, int]]:
    """`baobab serve` on the embedded model with `options`, on a free loopback port, its output in `log`: yields its
    /v1 URL and process id; on leaving, checks that it still runs, then stops it."""
    port = free_port()
    with log.open("w") as out:  # a file, not a pipe: a pipe nobody reads would block a server that logs a lot
        proc = subprocess.Popen(["baobab", "serve", "--model", "local:smollm2-135m", "--port", str(port), *options],
                                env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_serving(proc, f"{url}/models", timeout=120)
    except AssertionError as exc:
        proc.kill()
        raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
    yield url, proc.pid
    assert proc.poll() is None, f"the server died:\n{log.read_text()[-3000:]}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def serve_local() -> Callable[[list[str], Path], AbstractContextManager[tuple[str, int]]]:
    """`served`, for fixtures (conftest modules cannot be imported)."""
    return served


@pytest.fixture(scope="session")
def faulty(port_finder: Callable[[], int]) -> Iterator[FaultServer]:
    """An OpenAI-compatible server with scripted faults (tests/fault_server.py) on a loopback port."""
    server = FaultServer(port_finder()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server_key() -> str:
    return "test-key-123"


@pytest.fixture(scope="session")
def server(server_key: str) -> Iterator[str]:
    """`baobab serve` on the real embedded model, with an API key and the alias gpt-4o-mini; yields its /v1 URL."""
    port = free_port()
    env = {**os.environ, "BAOBAB_API_KEY": server_key, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(["baobab", "serve", "--model", "local:smollm2-135m", "--port", str(port),
                             "--alias", "gpt-4o-mini"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_serving(proc, f"{url}/models", headers={"Authorization": f"Bearer {server_key}"}, timeout=120)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
