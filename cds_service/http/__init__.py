"""The HTTP stage: routes (composed in cds_service.app), authentication, limits and headers."""
