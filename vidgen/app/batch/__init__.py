"""`vidgen batch`: many jobs from a JSONL or CSV file, one model load, a manifest to resume from.

jobs.py reads and checks the job file, manifest.py records and reads back what finished, ranks.py
shares the jobs between torchrun processes, progress.py shows the jobs bar, runner.py puts them together.
"""

from vidgen.app.batch.runner import BatchOptions, Report, run_batch

__all__ = ["BatchOptions", "Report", "run_batch"]
