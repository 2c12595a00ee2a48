"""Ports: what the use cases need from the outside (storage, the EHR, the queue, the clock, channels), as Protocols.

One module per feature (``ingest``, ``alerts``, ``bulk``, ``feeds``, ``worklist``, ...) holds the Protocols its use
cases call and the records those Protocols take or return: the values an adapter builds or reads. Logic stays in the
use-case modules (service/usecases/*.py); a port module imports only the domain, the FHIR layer, security, the
platform and other port modules, never a use case.

Adapters (service/adapters) import from here and from no other use-case module (the import-linter contract
``adapters-ports`` in pyproject.toml). This package re-exports nothing: every import names its feature module, e.g.
``from service.usecases.ports.alerts import AlertStore``. See docs/adr/0006-layers-and-ports.md.
"""
