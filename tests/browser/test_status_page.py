"""The status page as a person sees it: a real browser on the page a real cluster's master serves.

Every check reads what the browser rendered after the page's own script updated it (text and attributes of the
worker rows and the job's progress), never the API. One cluster, short leases (4 s, heartbeat 1 s), so "gone"
shows quickly.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.support import free_port

pytestmark = [pytest.mark.docker, pytest.mark.browser]

LEASE = 4
FAST = {"MPC_LEASE_SECONDS": str(LEASE), "MPC_HEARTBEAT_SECONDS": "1"}
TASKS = 30


def worker_row(page: Page, worker_id: str):
    return page.locator(f'#workers tbody tr[data-worker="{worker_id}"]')


def seconds_shown(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d)?) s ago", text)
    assert m, f"not an age in seconds: {text!r}"
    return float(m.group(1))


def test_the_page_shows_the_work_spread_a_dead_worker_gone_and_the_job_kept_over_a_master_restart(
        chromium_ready, make_cluster, watched_page):
    page = watched_page
    # A fixed host port (not 0): Docker gives an ephemeral port a new number when the container restarts, and
    # the open page must keep its address across the master's restart.
    web = free_port()
    c = make_cluster(workers=3, MPC_WEB_PORT=str(web), **FAST)
    c.wait_workers(3)
    names = c.worker_names()  # worker id (the container's hostname) -> container name
    assert len(names) == 3

    # 1. Every worker is listed, alive, with its own IP and a countdown within one lease.
    page.goto(f"http://127.0.0.1:{web}/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator("#workers tbody tr")).to_have_count(3, timeout=15_000)
    for wid, name in names.items():
        row = worker_row(page, wid)
        expect(row.locator(".state-label")).to_have_text("alive")
        expect(row.locator(".ip")).to_have_text(c.ip_of(name))
        expect(row.locator(".gone-in .countdown")).to_have_text(re.compile(rf"^in [0-{LEASE}]\.\d s$"))
    expect(page.locator("#no-jobs")).to_be_visible()

    # 2. A job runs while the page watches: it appears running, reaches 100%, and every worker's count is the
    #    one the client received.
    client = c.exec_job("submit", "--json", "--quiet", "--tasks", str(TASKS), "--seconds", "1")
    job = page.locator("#jobs tbody tr")
    expect(job).to_have_count(1, timeout=60_000)
    expect(job.locator(".state-label")).to_have_text("running")  # 30 one-second tasks on 3 workers: >= 10 s
    expect(job.locator(".state-label")).to_have_text("done", timeout=120_000)
    summary = c.finish(client)
    expect(job).to_have_attribute("data-job", summary["job"])
    expect(job.locator(".count")).to_have_text(f"{TASKS}/{TASKS}")
    expect(job.locator(".pct")).to_have_text("100%")
    expect(job.locator("progress")).to_have_js_property("value", TASKS)
    assert set(summary["workers"]) == set(names) and min(summary["workers"].values()) > 0, summary["workers"]
    for wid, n in summary["workers"].items():
        expect(worker_row(page, wid).locator(".done")).to_have_text(str(n))
        expect(worker_row(page, wid).locator(".leased")).to_have_text("0")

    # 3. A worker is killed: its row turns "gone" within the lease (plus a heartbeat and a poll), and keeps
    #    what it did; the others stay alive.
    victim, container = sorted(names.items())[0]
    c.docker("rm", "-f", container)
    killed = time.monotonic()
    row = worker_row(page, victim)
    expect(row.locator(".state-label")).to_have_text("gone", timeout=(LEASE + 4) * 1000)
    took = time.monotonic() - killed
    assert took <= LEASE + 4, took
    expect(row.locator(".gone-in")).to_have_text("—")
    assert seconds_shown(row.locator(".age").inner_text()) >= LEASE  # its last heartbeat keeps ageing
    expect(row.locator(".done")).to_have_text(str(summary["workers"][victim]))
    expect(page.locator("#events li", has_text=f"worker {victim} gone")).to_have_count(1)
    for wid in names:
        if wid != victim:
            expect(worker_row(page, wid).locator(".state-label")).to_have_text("alive")

    # 4. The master restarts: the open page says so, and the finished job is still listed, with its counts,
    #    from the journal.
    c.compose("restart", "master")
    banner = page.locator("#restarted")
    expect(banner).to_be_visible(timeout=90_000)
    expect(banner).to_contain_text("The master restarted: this is its start number 2")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=30_000)
    job = page.locator(f'#jobs tbody tr[data-job="{summary["job"]}"]')
    expect(job.locator(".state-label")).to_have_text("done")
    expect(job.locator(".count")).to_have_text(f"{TASKS}/{TASKS}")
    expect(job.locator(".pct")).to_have_text("100%")
    survivors = sorted(set(names) - {victim})
    for wid in survivors:  # the survivors reconnect to the new master process
        expect(worker_row(page, wid).locator(".state-label")).to_have_text("alive", timeout=60_000)
    expect(job.locator(".by-worker .chip")).to_have_text([f"{w} {n}" for w, n in sorted(summary["workers"].items())])
