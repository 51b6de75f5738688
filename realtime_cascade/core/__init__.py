"""The pure cascade core: no I/O, no clock reads, no event loop.

Feed a :class:`Turn` events that carry their own timestamps; perform the actions it returns;
call :meth:`Turn.tick` no later than :meth:`Turn.next_deadline`.
"""

from .actions import (
    Action,
    CancelTier,
    Cause,
    Decision,
    DecisionKind,
    DecisionRecord,
    Filler,
    FinishTurn,
    Handoff,
    Release,
    ReleaseToolCall,
    Scores,
    StartTier,
    TurnStatus,
)
from .cascade import Answer, Turn, Verifier
from .errors import BudgetError, CascadeError, InvalidEvent
from .gate import SpeechGate
from .params import (
    BudgetParams,
    Calibration,
    CascadeParams,
    ComplexityParams,
    GateParams,
    MonitorParams,
    PolicyParams,
    TierSpec,
)
from .router import OnlineRouter, RouterEstimate
from .signals import ConfidenceMonitor, complexity_of, entropy_of, request_features
from .trace import AttemptTrace, ToolCallRecord, TurnTrace

__all__ = [
    "Action",
    "Answer",
    "AttemptTrace",
    "BudgetError",
    "BudgetParams",
    "Calibration",
    "CancelTier",
    "CascadeError",
    "CascadeParams",
    "Cause",
    "ComplexityParams",
    "ConfidenceMonitor",
    "Decision",
    "DecisionKind",
    "DecisionRecord",
    "Filler",
    "FinishTurn",
    "GateParams",
    "Handoff",
    "InvalidEvent",
    "MonitorParams",
    "OnlineRouter",
    "PolicyParams",
    "Release",
    "ReleaseToolCall",
    "RouterEstimate",
    "Scores",
    "SpeechGate",
    "StartTier",
    "TierSpec",
    "ToolCallRecord",
    "Turn",
    "TurnStatus",
    "TurnTrace",
    "Verifier",
    "complexity_of",
    "entropy_of",
    "request_features",
]
