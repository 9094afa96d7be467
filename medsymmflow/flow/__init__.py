"""Flow matching: the conditional path, fixed-step ODE solvers and 2D toy data."""

from medsymmflow.flow.paths import SIGMA_MIN, PathSample, flow_matching_loss, ot_path, sample_time
from medsymmflow.flow.solvers import SOLVERS, Solution, integrate
from medsymmflow.flow.toy import TOYS, sample_toy

__all__ = [
    "SIGMA_MIN",
    "SOLVERS",
    "TOYS",
    "PathSample",
    "Solution",
    "flow_matching_loss",
    "integrate",
    "ot_path",
    "sample_time",
    "sample_toy",
]
