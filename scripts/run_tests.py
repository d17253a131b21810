"""Run the whole suite (`make test`) and refuse a run that tested nothing.

With no arguments the suite runs in two phases. First every test not marked `alone`, spread over
`PHIGATE_TEST_WORKERS` processes (pytest-xdist; default 2, the cores CI has): each worker has its
own databases, ports and temporary directories (tests/conftest.py). Then the `alone` tests in one
process with nothing else running: they measure a server under load (slow callbacks of the event
loop, a leader moving after SIGKILL, replicas behind a proxy) or one process's memory, and other
tests' CPU beside them would falsify what they measure. With arguments, one pytest run of exactly
those (`scripts/run_tests.py tests/crypto -k sqlite`).

pytest exits 5 when it collected no tests; in either phase that must fail loudly, not pass.
Lanes that could not run on this machine are listed at the end of each phase by the test session
itself (tests/conftest.py); under CI=true they fail instead.
"""

import os
import subprocess
import sys


def pytest(*args: str) -> int:
    rc = subprocess.call([sys.executable, "-m", "pytest", *args])
    if rc == 5:
        print(f"error: pytest collected no tests ({' '.join(args)})", file=sys.stderr)
        return 1
    return rc


if sys.argv[1:]:
    sys.exit(pytest(*sys.argv[1:]))

workers = os.environ.get("PHIGATE_TEST_WORKERS", "2")
parallel = pytest("-n", workers, "-m", "not alone")
alone = pytest("-m", "alone")
sys.exit(parallel or alone)
