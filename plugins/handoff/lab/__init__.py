"""The definition lab: what a candidate funnel definition would have done on the warehouse's history, before a team
adopts it (docs/funnel.md "Changing the definition safely").

- ``backtest``: ``handoff funnel backtest CANDIDATE.yml`` rebuilds the definition's models for the candidate in the
  schema ``backtest`` (the production marts untouched), writes ``marts.funnel_backtest`` and prints both side by side;
- ``suggest``: ``handoff funnel suggest`` learns points for the existing rules from the point-in-time rule hits and
  the opportunities that followed (scikit-learn, checked by time) and writes them as a candidate to backtest.
"""

from __future__ import annotations

from handoff.lab import suggest
from handoff.lab.backtest import BacktestResult, add_arguments, backtest, run

__all__ = ["BacktestResult", "add_arguments", "backtest", "run", "suggest"]
