"""Errors of the mapping layer that the client caused (they become HTTP 400)."""


class MappingInputError(ValueError):
    """The request's data cannot be read safely as one patient's chart (e.g. two Patients in prefetch)."""
