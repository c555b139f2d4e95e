"""Analysis: a run directory's samples and trial metrics -> per-variant summaries, A/B
comparisons with confidence intervals and verdicts, targets and grade, projected cost.

Modules: `catalog` (the metrics, headline sets, default targets), `blocks` (raw samples -> per
time-block counts with polars), `stats` (bootstrap, intervals, verdicts), `cost`, `analyze`
(putting it together), `runs` (run directories in, `lab compare` across two runs), `render`
(text tables).
"""
