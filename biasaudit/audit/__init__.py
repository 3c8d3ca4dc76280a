"""Audit orchestration: run configuration, the suite registry, and a resumable runner."""

from biasaudit.audit.config import RunConfig
from biasaudit.audit.runner import run_audit
from biasaudit.audit.suites import SUITES, Suite, register_suite

__all__ = ["SUITES", "RunConfig", "Suite", "register_suite", "run_audit"]
