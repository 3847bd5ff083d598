"""Writes the sample patients of `examples/bundles/` and the draft orders of `examples/drafts/`.

Run it after changing an example: `.venv/bin/python examples/generate.py`, then
`cds-service examples requests` to refresh `examples/requests/`. The JSON files are
committed; this script only exists so that every date is computed from one `NOW` and
every id is stable. All patients are synthetic.

Each example's dates are chosen so that its outcome holds for a long time after `NOW`
where the clinical logic allows it (a ferritin a few weeks old stays current for a year);
`examples/manifest.yaml` gives the date each example is meant to be evaluated at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from cds_service.tooling import fixtures as fx

NOW = fx.DEFAULT_NOW  # 2026-11-26T09:00Z: every example is evaluated as of this instant
HERE = Path(__file__).resolve().parent
FHIR_BASE = "https://fhir.example.org/r4"
PRACTITIONER = "Practitioner/example-gp"


class Builder:
    """The resources of one synthetic patient, with stable ids derived from the example name."""

    def __init__(self, name: str, *, given: str, family: str, gender: str, birth_date: str) -> None:
        self.name = name
        self.pid = f"ex-{name}"
        self.counter = 0
        self.resources: list[dict[str, Any]] = [
            fx.patient(
                self.pid,
                gender=gender,
                birth_date=birth_date,
                name=(given, family),
                identifier=[{"system": "https://hospital.example.org/mrn", "value": f"MRN-{sum(map(ord, name)) * 97 % 900000 + 100000}"}],
            )
        ]

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{self.pid}-{prefix}-{self.counter}"

    def add(self, make: Callable[..., dict[str, Any]], *args: Any, patient_id: str | None = None, **kw: Any) -> dict[str, Any]:
        """Build a resource with a fixtures builder, for this patient unless another is named."""
        prefix = {
            fx.ferritin: "obs", fx.hemoglobin: "obs", fx.tsat: "obs", fx.serum_iron: "obs", fx.tibc: "obs",
            fx.condition: "cond", fx.medication_request: "medrx", fx.medication_statement: "medst",
            fx.medication_administration: "medadm", fx.allergy: "allergy",
        }[make]
        id_field = {"obs": "oid", "cond": "cid", "medrx": "mid", "medst": "sid", "medadm": "aid", "allergy": "aid"}[prefix]
        kw.setdefault(id_field, self.next_id(prefix))
        resource = make(*args, patient_id=patient_id or self.pid, **kw)
        self._decorate(resource)
        self.resources.append(resource)
        return resource

    def _decorate(self, resource: dict[str, Any]) -> None:
        """What a real EHR adds: who ordered or recorded it, dosage text."""
        rtype = resource["resourceType"]
        if rtype == "MedicationRequest":
            resource["requester"] = {"reference": PRACTITIONER}
            text = resource["medicationCodeableConcept"]["text"].lower()
            if "oral tablet" in text or "ferrous" in text:
                resource["dosageInstruction"] = [{"text": "1 tablet by mouth once daily"}]
        if rtype == "Condition":
            resource["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}]
            resource["recordedDate"] = resource.get("onsetDateTime")
        if rtype == "Observation" and resource["code"]["coding"][0]["code"] == "2276-4":
            resource["referenceRange"] = [{"low": {"value": 15, "unit": "ng/mL", "system": fx.UCUM, "code": "ng/mL"}, "high": {"value": 150, "unit": "ng/mL", "system": fx.UCUM, "code": "ng/mL"}}]

    def bundle(self) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "id": self.name,
            "type": "collection",
            "timestamp": NOW.isoformat().replace("+00:00", "Z"),
            "entry": [{"fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}", "resource": r} for r in self.resources],
        }


def adult(name: str, given: str, family: str, gender: str = "female", birth_date: str = "1968-03-14") -> Builder:
    return Builder(name, given=given, family=family, gender=gender, birth_date=birth_date)


def examples() -> list[Builder]:
    out: list[Builder] = []

    b = adult("rls-no-ferritin", "Maria", "Lopez")
    b.add(fx.condition, "rls", onset_days_ago=200)
    b.add(fx.hemoglobin, 13.1, days_ago=30)
    out.append(b)

    b = adult("rls-low-ferritin", "Anna", "Berg", birth_date="1971-06-02")
    b.add(fx.condition, "rls", onset_days_ago=120)
    b.add(fx.ferritin, 32, days_ago=20)
    b.add(fx.tsat, 17, days_ago=20)
    b.add(fx.hemoglobin, 12.8, days_ago=20)
    out.append(b)

    b = adult("rls-low-ferritin-no-tsat", "Helen", "Moss", birth_date="1963-09-21")
    b.add(fx.condition, "rls-icd", onset_days_ago=90)
    b.add(fx.ferritin, 41, days_ago=15)
    out.append(b)

    b = adult("on-oral-iron-two-weeks", "Grace", "Okafor", birth_date="1979-01-30")
    b.add(fx.condition, "rls", onset_days_ago=300)
    b.add(fx.ferritin, 29, days_ago=21)
    b.add(fx.tsat, 15, days_ago=21)
    b.add(fx.medication_request, "ferrous-sulfate", days_ago=14)
    out.append(b)

    b = adult("failed-oral-trial", "Ruth", "Svensson", birth_date="1966-11-05")
    b.add(fx.condition, "rls", onset_days_ago=500)
    b.add(fx.ferritin, 22, days_ago=110)
    b.add(fx.tsat, 12, days_ago=110)
    b.add(fx.medication_request, "ferrous-sulfate", days_ago=100)
    b.add(fx.ferritin, 35, days_ago=10)
    out.append(b)

    b = adult("rls-with-ida", "Fatima", "Haddad", birth_date="1984-07-19")
    b.add(fx.condition, "rls", onset_days_ago=150)
    b.add(fx.condition, "ida", onset_days_ago=40)
    b.add(fx.ferritin, 14, days_ago=12)
    b.add(fx.tsat, 8, days_ago=12)
    b.add(fx.hemoglobin, 10.4, days_ago=12)
    out.append(b)

    b = adult("celiac-rls-low-ferritin", "Claire", "Dubois", birth_date="1990-02-11")
    b.add(fx.condition, "rls", onset_days_ago=210)
    b.add(fx.condition, "celiac", onset_days_ago=2000)
    b.add(fx.ferritin, 26, days_ago=18)
    b.add(fx.tsat, 13, days_ago=18)
    out.append(b)

    b = adult("oral-iron-intolerance", "Paul", "Nguyen", gender="male", birth_date="1958-05-27")
    b.add(fx.condition, "rls", onset_days_ago=700)
    b.add(fx.allergy, "ferrous-sulfate", reaction=[{"manifestation": [{"text": "nausea and epigastric pain"}]}])
    b.add(fx.ferritin, 31, days_ago=25)
    b.add(fx.tsat, 16, days_ago=25)
    b.add(fx.hemoglobin, 14.2, days_ago=25)
    out.append(b)

    b = adult("iv-iron-repeat-course", "Ingrid", "Larsen", birth_date="1960-08-08")
    b.add(fx.condition, "rls", onset_days_ago=900)
    b.add(fx.ferritin, 18, days_ago=120)
    b.add(fx.medication_administration, "ferric-carboxymaltose", days_ago=100)
    b.add(fx.ferritin, 38, days_ago=20)
    b.add(fx.tsat, 17, days_ago=20)
    out.append(b)

    b = adult("iv-iron-still-working", "Olga", "Petrova", birth_date="1957-12-01")
    b.add(fx.condition, "rls", onset_days_ago=400)
    b.add(fx.ferritin, 16, days_ago=75)
    b.add(fx.medication_administration, "ferric-carboxymaltose", days_ago=60)
    b.add(fx.ferritin, 42, days_ago=30)
    out.append(b)

    b = adult("rls-ferritin-adequate", "Thomas", "Keller", gender="male", birth_date="1955-04-17")
    b.add(fx.condition, "rls", onset_days_ago=365)
    b.add(fx.ferritin, 128, days_ago=30)
    b.add(fx.tsat, 31, days_ago=30)
    out.append(b)

    b = adult("rls-ferritin-60", "Sofia", "Rossi", birth_date="1973-10-03")
    b.add(fx.condition, "rls", onset_days_ago=80)
    b.add(fx.ferritin, 62, days_ago=14)
    b.add(fx.tsat, 24, days_ago=14)
    out.append(b)

    b = adult("rls-ferritin-90-iv-band", "Laura", "Schmidt", birth_date="1969-05-09")
    b.add(fx.condition, "rls", onset_days_ago=160)
    b.add(fx.ferritin, 88, days_ago=14)
    b.add(fx.tsat, 26, days_ago=14)
    out.append(b)

    b = adult("high-tsat-not-on-iron", "Emma", "Walsh", birth_date="1981-03-22")
    b.add(fx.condition, "rls", onset_days_ago=100)
    b.add(fx.ferritin, 34, days_ago=10)
    b.add(fx.tsat, 52, days_ago=10)
    out.append(b)

    b = adult("iron-overload-on-oral-iron", "Robert", "Hughes", gender="male", birth_date="1952-01-15")
    b.add(fx.condition, "rls", onset_days_ago=800)
    b.add(fx.medication_statement, "ferrous-sulfate", days_ago=400)
    b.add(fx.ferritin, 420, days_ago=12)
    b.add(fx.tsat, 56, days_ago=12)
    out.append(b)

    b = adult("hemochromatosis-on-oral-iron", "Sean", "Murphy", gender="male", birth_date="1962-06-30")
    b.add(fx.condition, "rls", onset_days_ago=300)
    b.add(fx.condition, "hemochromatosis", onset_days_ago=3000)
    b.add(fx.medication_statement, "ferrous-sulfate", days_ago=60)
    b.add(fx.ferritin, 45, days_ago=20)
    out.append(b)

    b = adult("no-rls-ida-screen", "Aisha", "Bello", birth_date="1994-09-14")
    b.add(fx.condition, "ida-icd", onset_days_ago=30)
    b.add(fx.ferritin, 9, days_ago=30)
    b.add(fx.hemoglobin, 10.1, days_ago=30)
    out.append(b)

    b = adult("pregnancy-rls", "Lucy", "Chen", birth_date="1995-12-08")
    b.add(fx.condition, "rls", onset_days_ago=40)
    b.add(fx.condition, "pregnancy", onset_days_ago=150)
    b.add(fx.ferritin, 38, days_ago=10)
    b.add(fx.tsat, 16, days_ago=10)
    b.add(fx.hemoglobin, 11.6, days_ago=10)
    out.append(b)

    b = adult("dopamine-agonist-low-ferritin", "Peter", "Novak", gender="male", birth_date="1959-02-25")
    b.add(fx.condition, "rls", onset_days_ago=1500)
    b.add(fx.medication_request, "ropinirole", days_ago=400)
    b.add(fx.ferritin, 36, days_ago=16)
    b.add(fx.tsat, 18, days_ago=16)
    out.append(b)

    b = adult("sertraline-aggravating", "Nina", "Kowalski", birth_date="1977-08-12")
    b.add(fx.condition, "rls", onset_days_ago=200)
    b.add(fx.medication_request, "sertraline", days_ago=300)
    b.add(fx.ferritin, 115, days_ago=20)
    b.add(fx.tsat, 29, days_ago=20)
    out.append(b)

    b = adult("bupropion-not-aggravating", "Mark", "Jensen", gender="male", birth_date="1970-04-04")
    b.add(fx.condition, "rls", onset_days_ago=200)
    b.add(fx.medication_request, "bupropion", days_ago=300)
    b.add(fx.ferritin, 110, days_ago=20)
    b.add(fx.tsat, 27, days_ago=20)
    out.append(b)

    b = Builder("child-low-ferritin", given="Leo", family="Martin", gender="male", birth_date="2016-05-20")
    b.add(fx.condition, "rls", onset_days_ago=90)
    b.add(fx.ferritin, 19, days_ago=14)
    b.add(fx.tsat, 14, days_ago=14)
    b.add(fx.hemoglobin, 12.2, days_ago=14)
    out.append(b)

    b = adult("entered-in-error-ferritin", "Julia", "Fischer", birth_date="1980-01-09")
    b.add(fx.condition, "rls", onset_days_ago=100)
    b.add(fx.ferritin, 21, days_ago=12, status="entered-in-error")
    out.append(b)

    b = adult("other-patients-ferritin", "Sarah", "Cohen", birth_date="1975-07-07")
    b.add(fx.condition, "rls", onset_days_ago=100)
    b.add(fx.ferritin, 24, days_ago=12, patient_id="ex-someone-else")
    out.append(b)

    b = adult("ferritin-wrong-unit", "Eva", "Horvat", birth_date="1983-11-29")
    b.add(fx.condition, "rls", onset_days_ago=100)
    b.add(fx.ferritin, 30, days_ago=12, unit="U/L", ucum="U/L")
    out.append(b)

    b = adult("refuted-rls", "Karen", "Lee", birth_date="1972-02-18")
    b.add(fx.condition, "rls", onset_days_ago=100, verification="refuted")
    b.add(fx.ferritin, 33, days_ago=12)
    b.add(fx.tsat, 18, days_ago=12)
    out.append(b)

    # Order hooks: the bundle is the chart; the draft order comes from examples/drafts/.
    b = adult("order-sign-iron-without-ferritin", "Diane", "Roberts", birth_date="1965-10-10")
    b.add(fx.condition, "rls", onset_days_ago=250)
    out.append(b)

    b = adult("order-sign-oral-iron-low-ferritin", "Mei", "Tanaka", birth_date="1986-06-06")
    b.add(fx.condition, "rls", onset_days_ago=60)
    b.add(fx.ferritin, 33, days_ago=9)
    b.add(fx.tsat, 15, days_ago=9)
    out.append(b)

    b = adult("order-select-oral-iron-celiac", "Hannah", "Weber", birth_date="1988-03-03")
    b.add(fx.condition, "rls", onset_days_ago=180)
    b.add(fx.condition, "celiac", onset_days_ago=1500)
    b.add(fx.ferritin, 27, days_ago=11)
    b.add(fx.tsat, 14, days_ago=11)
    out.append(b)

    b = adult("order-sign-iron-high-ferritin", "George", "Evans", gender="male", birth_date="1954-09-19")
    b.add(fx.condition, "rls", onset_days_ago=400)
    b.add(fx.ferritin, 460, days_ago=15)
    b.add(fx.tsat, 38, days_ago=15)
    out.append(b)

    return out


def drafts() -> dict[str, dict[str, Any]]:
    """Draft MedicationRequests as an EHR puts them in context.draftOrders (no patient: filled in by the request builder)."""
    out: dict[str, dict[str, Any]] = {}
    for kind, name in (("ferrous-sulfate", "ferrous-sulfate-325"), ("ferric-carboxymaltose", "ferric-carboxymaltose")):
        draft = fx.draft_order(kind, patient_id="PATIENT", mid=f"draft-{name}")
        draft.pop("subject")
        if kind == "ferrous-sulfate":
            draft["dosageInstruction"] = [{"text": "325 mg by mouth once daily"}]
        out[name] = draft
    return out


def main() -> None:
    bundles = HERE / "bundles"
    bundles.mkdir(exist_ok=True)
    for builder in examples():
        (bundles / f"{builder.name}.json").write_text(json.dumps(builder.bundle(), indent=2) + "\n", encoding="utf-8")
    draft_dir = HERE / "drafts"
    draft_dir.mkdir(exist_ok=True)
    for name, draft in drafts().items():
        (draft_dir / f"{name}.json").write_text(json.dumps(draft, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
