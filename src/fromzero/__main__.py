"""Allows `python -m fromzero ...` as well as the `fromzero` command."""

from fromzero.cli import main

raise SystemExit(main())
