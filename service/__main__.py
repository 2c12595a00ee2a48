"""`python -m service` is the `refracture` command."""

from service.entrypoints.cli import main

raise SystemExit(main())
