"""A pytest plugin: never skip silently. The end of the run says which groups of tests did not run
on this machine (PostgreSQL, the browser, durable-rules) and how to run them."""

from __future__ import annotations


SKIP_GROUPS = (
    ("CDS_TEST_POSTGRES_URL", "PostgreSQL", "start one with `bash .ci/run postgres` and set CDS_TEST_POSTGRES_URL to the URL it prints, or run `.ci/run`"),
    ("chromium", "browser (headless Chromium)", "install chromium and chromedriver (`apt-get install chromium chromium-driver`), or run `.ci/run`"),
    ("durable-rules", "durable-rules", "use Python 3.11 or 3.12, where durable-rules 2.0.28 builds"),
)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Never skip silently: say which groups of tests did not run here and how to run them."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    counts: dict[str, int] = {}
    for report in skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        group = next((name for marker, name, _ in SKIP_GROUPS if marker.lower() in reason.lower()), "other")
        counts[group] = counts.get(group, 0) + 1
    terminalreporter.section("tests that did not run here")
    for marker, name, how in SKIP_GROUPS:
        if counts.get(name):
            terminalreporter.write_line(f"{counts[name]} {name} test(s) skipped: {how}")
    if counts.get("other"):
        terminalreporter.write_line(f"{counts['other']} other test(s) skipped (see the SKIPPED lines above)")
