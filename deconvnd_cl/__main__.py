"""`python -m deconvnd_cl` is the `deconvnd-cl` command."""

from .cli import main

raise SystemExit(main())
