"""The fixture the example tests share."""

from typing import Callable, Iterator, List, Tuple

import pytest

from support.subprocs import Proc, example


@pytest.fixture
def start_example() -> Iterator[Callable[..., Tuple[Proc, int]]]:
    """``start_example(name, *args)`` runs a server example: (Proc, port it printed).

    At teardown each is stopped with SIGINT and must exit with status 0.
    """
    procs: List[Proc] = []

    def start(name: str, *args: str) -> Tuple[Proc, int]:
        proc = example(name, *args)
        procs.append(proc)
        return proc, proc.printed_port()

    yield start
    failures = []
    for proc in procs:  # stop every one before failing on any
        try:
            code = proc.stop()
        except AssertionError as exc:
            failures.append(str(exc))
            continue
        if code != 0:
            failures.append("exit status %s:\n%s" % (code, proc.output))
    assert not failures, "\n".join(failures)
