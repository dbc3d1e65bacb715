"""``python -m trailstore``: the command line."""

from trailstore.cli import main

raise SystemExit(main())
