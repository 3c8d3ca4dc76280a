"""Audit orchestration: the run configuration and a resumable runner over the registered suites."""

from biasaudit.audit.config import RunConfig
from biasaudit.audit.runner import run_audit
from biasaudit.suite import SUITES, Suite, SuiteResult, builtin_suites, register_suite

builtin_suites()  # the method packages' suites, registered on import (their runs import lazily)

__all__ = ["SUITES", "RunConfig", "Suite", "SuiteResult", "register_suite", "run_audit"]
