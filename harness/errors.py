"""One exception type for every user-facing failure.

Bad config, unknown method or task, missing or malformed data: each raises
`HarnessError(problem, fix)`. The CLI prints exactly one message naming the
problem and the fix and exits non-zero; nothing else in the harness prints
tracebacks for user mistakes.
"""
from __future__ import annotations


class HarnessError(Exception):
    """A user-facing error: what went wrong and how to fix it."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem, fix)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}\n  fix: {self.fix}"
