"""What a batch did, for the closing line and --json; under torchrun, rank 0 merges every rank's."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidgen.app.batch.manifest import Record, manifest_files
from vidgen.app.batch.progress import clock
from vidgen.core.errors import USAGE

JOBS_FAILED = 1  # some jobs failed; the manifest says which and why


@dataclass
class Report:
    """What a batch (or, before merging, one rank) did; --json prints `as_json()`."""

    jobs: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    to_run: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)  # name, line, error
    seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    outdir: str = ""
    dry_run: bool = False
    speaks: bool = True  # False on ranks other than 0: rank 0 reports for the whole batch

    def add(self, record: Record) -> None:
        setattr(self, record.status, getattr(self, record.status) + 1)
        if record.status == "failed":
            self.failures.append({"name": record.name, "line": record.line, "error": record.error})

    @property
    def exit_code(self) -> int:
        if not self.failed:
            return 0
        return USAGE if self.dry_run else JOBS_FAILED

    def as_json(self) -> dict[str, Any]:
        manifest = [str(path) for path in manifest_files(Path(self.outdir))] if self.outdir else []
        failures = sorted(self.failures, key=lambda failure: failure["line"])
        if self.dry_run:
            counts = {"jobs": self.jobs, "invalid": self.failed, "done": self.skipped, "to_run": self.to_run}
            return {"dry_run": True, **counts, "failures": failures}
        return {
            "jobs": self.jobs,
            "ok": self.ok,
            "failed": self.failed,
            "skipped": self.skipped,
            "failures": failures,
            "outdir": self.outdir,
            "manifest": manifest,
            "seconds": round(self.seconds, 3),
            "text_cache": {"hits": self.cache_hits, "misses": self.cache_misses},
        }

    def describe(self) -> str:
        """The closing line on stdout."""
        if self.dry_run:
            return (
                f"dry run: {self.jobs} jobs: {self.failed} invalid, {self.skipped} done before, "
                f"{self.to_run} to run; nothing was generated"
            )
        manifest = ", ".join(str(path) for path in manifest_files(Path(self.outdir)))
        counts = f"{self.ok} ok, {self.failed} failed, {self.skipped} skipped (done before)"
        return f"batch: {self.jobs} jobs: {counts} in {clock(self.seconds)}; manifest {manifest}"

    def failure_hint(self) -> str:
        lines = line_list(sorted(failure["line"] for failure in self.failures))
        return (
            f"{self.failed} of {self.jobs} jobs failed (lines {lines}); the manifest has the reasons, "
            "and running the same command again retries them"
        )


def merge(reports: list[Report]) -> Report:
    """One report for the whole batch from every rank's."""
    merged = Report(outdir=reports[0].outdir)
    for report in reports:
        for name in ("jobs", "ok", "failed", "skipped", "cache_hits", "cache_misses"):
            setattr(merged, name, getattr(merged, name) + getattr(report, name))
        merged.failures += report.failures
        merged.seconds = max(merged.seconds, report.seconds)
    return merged


def line_list(lines: list[int]) -> str:
    """[3, 4, 5, 9] -> "3-5,9"."""
    spans: list[list[int]] = []
    for line in lines:
        if spans and line == spans[-1][1] + 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    return ",".join(str(start) if start == end else f"{start}-{end}" for start, end in spans)
