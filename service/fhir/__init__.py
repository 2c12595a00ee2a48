"""FHIR R4 boundary: validation, terminology, normalisation into facts, outbound builders."""
