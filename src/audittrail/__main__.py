"""``python -m audittrail``: the command line."""

from audittrail.cli import main

raise SystemExit(main())
