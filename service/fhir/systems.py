"""Code-system and identifier-system URIs (docs/sources/codes.md §0 and docs/sources/contract.md)."""

from typing import Final

LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC: Final = "http://www.whocc.no/atc"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10: Final = "http://hl7.org/fhir/sid/icd-10"
ICD10PCS: Final = "http://www.cms.gov/Medicare/Coding/ICD10"
CPT: Final = "http://www.ama-assn.org/go/cpt"
NDC: Final = "http://hl7.org/fhir/sid/ndc"
UCUM: Final = "http://unitsofmeasure.org"

CANONICAL_BASE: Final = "https://refracture.dev/fhir"
MEASURE: Final = f"{CANONICAL_BASE}/CodeSystem/measure"
VERTEBRAL_LEVEL: Final = f"{CANONICAL_BASE}/CodeSystem/vertebral-level"
ALERT_TYPE: Final = f"{CANONICAL_BASE}/CodeSystem/alert-type"
RISK_FACTOR: Final = f"{CANONICAL_BASE}/CodeSystem/risk-factor"
SID_BASE: Final = f"{CANONICAL_BASE}/sid"

OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
RISK_PROBABILITY: Final = "http://terminology.hl7.org/CodeSystem/risk-probability"
