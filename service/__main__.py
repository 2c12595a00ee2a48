"""`python -m service` is the `refracture` command."""

from service.cli import main

raise SystemExit(main())
