"""``python -m realtime_cascade.cli``: the same command as ``realtime-cascade``."""

from .main import main

raise SystemExit(main())
