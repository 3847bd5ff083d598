"""The rule catalog, served where the cards' links point: /rules/catalog#<rule-id>."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["rules"])
