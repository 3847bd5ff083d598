"""Routers other than the CDS Hooks endpoints: operations, the rule catalog, the test page."""
