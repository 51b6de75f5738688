"""Errors raised by the pure cascade core.

CascadeError
├── InvalidEvent        an event that the state machine cannot accept in its state
│                       (a token for an attempt that was never started, an event after
│                       the turn finished); the turn's state is left untouched
└── BudgetError         a configuration whose budgets can never be met
"""

from __future__ import annotations


class CascadeError(Exception):
    """Base class of the core's errors."""


class InvalidEvent(CascadeError):
    """The event is not valid in the turn's current state; nothing was changed."""


class BudgetError(CascadeError):
    """Budgets that make every turn impossible (e.g. a negative cap)."""
