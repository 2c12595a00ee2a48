"""refracture: re-fracture risk and alerts after vertebral augmentation, from FHIR R4 data."""
