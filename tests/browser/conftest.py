"""Browser tests: the status page in Debian's chromium, driven by Playwright through pytest-playwright's fixtures
(``page``), against a real cluster from the integration suite's ``make_cluster``.

The cluster fixtures are imported from tests/integration/conftest.py rather than copied or moved, so the two suites
share one definition (this folder gets its own instance of the session fixtures: one more cached image build and
its own key). Playwright never downloads a browser here: it is pointed at /usr/bin/chromium, which `.ci/run`
installs from Debian when it is missing. Without it (or without Playwright) the tests skip, except under CI=true,
where that is a failure.
"""

from __future__ import annotations

import os
import re

import pytest

from tests.integration.cluster import LOG_DIR
from tests.integration.conftest import (  # noqa: F401  (fixtures and the report hook make_cluster reads)
    docker_ready,
    make_cluster,
    pytest_runtest_makereport,
    session_env,
)

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium_ready():
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "Playwright for Python is not installed (pip install -e '.[test]')"
    if problem is None and not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does it)"
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {problem}: the browser tests must run in CI")
        pytest.skip(f"{problem}: browser tests skipped (they are required under CI=true)")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args, chromium_ready):
    """pytest-playwright's launch options, pointed at Debian's chromium (root needs --no-sandbox)."""
    args = list(browser_type_launch_args.get("args", []))
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": args}


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 900}}


@pytest.fixture
def watched_page(page, request):
    """The page; if the test failed, a full-page screenshot goes to test-logs/ (request it after make_cluster,
    so the shot is taken before the cluster is torn down)."""
    yield page
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        LOG_DIR.mkdir(exist_ok=True)
        path = LOG_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', request.node.name)}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
            print(f"\nscreenshot saved to {path}")
        except Exception as e:  # a crashed browser must not hide the test's own failure
            print(f"\nno screenshot: {e}")


@pytest.fixture(scope="session")
def base_url():
    """No base URL: each test opens its own cluster's address (and pytest-base-url's own fixture warns on pytest 9)."""
    return None
