"""CDS Hooks 2.0 request, response, discovery and feedback models: the HTTP boundary.

Field descriptions become the OpenAPI document. FHIR payloads stay plain JSON objects here;
`fhir_mappings` validates only the resources the rules read.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ORDER_HOOKS = ("order-select", "order-sign")
HOOKS = ("patient-view", *ORDER_HOOKS)


class FhirAuthorization(BaseModel):
    model_config = ConfigDict(extra="allow")
    access_token: str = Field(..., description="Bearer token for the FHIR server")
    token_type: str = Field("Bearer")
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None


class HookContext(BaseModel):
    """The hook's context. `draftOrders` (a FHIR Bundle) is required for order-select and order-sign."""

    model_config = ConfigDict(extra="allow")
    patientId: str = Field(..., min_length=1, max_length=256, description="FHIR id of the patient in context")
    userId: str | None = Field(None, description="e.g. Practitioner/123")
    encounterId: str | None = None
    selections: list[str] | None = Field(None, description="order-select: references of the selected draft orders")
    draftOrders: dict[str, Any] | None = Field(None, description="order-select/order-sign: a FHIR Bundle of draft orders")


class CDSRequest(BaseModel):
    """A CDS Hooks 2.0 service invocation."""

    model_config = ConfigDict(extra="allow")
    hook: str = Field(..., description="patient-view, order-select or order-sign")
    hookInstance: str = Field(..., min_length=1, max_length=256, description="unique id of this hook invocation")
    fhirServer: str | None = Field(None, description="base URL of the EHR's FHIR server (http or https)")
    fhirAuthorization: FhirAuthorization | None = None
    context: HookContext
    prefetch: dict[str, Any] | None = Field(None, description="prefetch key -> FHIR resource, Bundle or null")

    @field_validator("fhirServer")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("fhirServer must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _order_context(self) -> "CDSRequest":
        if self.hook in ORDER_HOOKS:
            draft = self.context.draftOrders
            if not isinstance(draft, dict) or draft.get("resourceType") != "Bundle":
                raise ValueError(f"{self.hook} needs context.draftOrders, a FHIR Bundle")
        if self.hook == "order-select" and self.context.selections is None:
            raise ValueError("order-select needs context.selections")
        return self


class Coding(BaseModel):
    system: str | None = None
    code: str
    display: str | None = None


class Source(BaseModel):
    label: str
    url: str | None = None
    icon: str | None = Field(None, description="absolute URL of a 100x100 PNG shown beside the source")
    topic: Coding | None = None


class Action(BaseModel):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = Field(None, description="delete: the Type/id of the resource to remove")


class Suggestion(BaseModel):
    label: str
    uuid: str | None = None
    isRecommended: bool | None = None
    actions: list[Action] = Field(default_factory=list)


class Link(BaseModel):
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"


class OverrideReason(BaseModel):
    code: str
    system: str | None = None
    display: str | None = None


class Card(BaseModel):
    uuid: str
    summary: str = Field(..., max_length=140)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[OverrideReason] | None = None
    links: list[Link] | None = None


class CDSResponse(BaseModel):
    cards: list[Card]
    systemActions: list[Action] | None = None
    extension: dict[str, Any] | None = Field(None, description="decision id and rule-set version of this answer")


class ServiceDescription(BaseModel):
    hook: str
    title: str
    description: str
    id: str
    prefetch: dict[str, str]
    usageRequirements: str | None = None
    extension: dict[str, Any] | None = None


class Discovery(BaseModel):
    services: list[ServiceDescription]


class AcceptedSuggestion(BaseModel):
    id: str


class OverrideReasonFeedback(BaseModel):
    model_config = ConfigDict(extra="allow")
    reason: Coding | None = None
    userComment: str | None = None


class FeedbackItem(BaseModel):
    card: str = Field(..., min_length=1, description="uuid of the card the feedback is about")
    outcome: Literal["accepted", "overridden"]
    outcomeTimestamp: str = Field(..., min_length=1, description="ISO 8601 instant")
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReasonFeedback | None = None


class Feedback(BaseModel):
    feedback: list[FeedbackItem] = Field(..., min_length=1)


class FeedbackReceipt(BaseModel):
    received: int = Field(..., description="feedback items accepted (each is recorded in the decision log)")


class ErrorBody(BaseModel):
    error: str = Field(..., description="short machine-readable code")
    detail: str = Field(..., description="one sentence saying what is wrong and what to fix, for the developer of the client")
    fields: list[dict[str, Any]] | None = Field(None, description="400: each field at fault, {loc, msg, type}, never its value")
    failures: list[dict[str, str]] | None = Field(None, description="412: each prefetch key not obtained, {key, reason, message}")
