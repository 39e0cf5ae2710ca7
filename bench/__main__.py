"""Run the benchmarks: ``python -m bench [--quick] [--json PATH]``."""

from bench._runner import main

raise SystemExit(main())
