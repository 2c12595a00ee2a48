"""The EHR's FHIR server: an httpx client, its authentication, and what its failures mean."""
