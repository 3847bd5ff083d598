"""Tools for authors, auditors and developers: rule lint and tests, fixtures, the catalog, offline runs.

They may import the runtime; nothing on the request path imports them."""
