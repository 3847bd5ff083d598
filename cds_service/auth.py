"""Authentication of the calling EHR (CDS Hooks 2.0 security): the bearer JWT.

Foundation version: verification is off (development mode). The security issue implements
JWT verification behind the same dependency.
"""

from __future__ import annotations

from fastapi import Request


async def verify_caller(request: Request) -> None:
    """FastAPI dependency on every CDS call and feedback: raises Unauthorized when not acceptable."""
    return None
