"""The definition lab: what a candidate funnel definition would have done on the warehouse's history, before a team
adopts it (docs/funnel.md "Changing the definition safely").

- ``backtest``: ``handoff funnel backtest CANDIDATE.yml`` rebuilds the definition's models for the candidate in the
  schema ``backtest`` (the production marts untouched) and writes ``marts.funnel_backtest``; ``compare`` prints it.
"""

from __future__ import annotations

from handoff.lab.backtest import BacktestResult, add_arguments, backtest, run

__all__ = ["BacktestResult", "add_arguments", "backtest", "run"]
