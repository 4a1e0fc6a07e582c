"""The asset checks of the loop in Dagster: specs from the lib checks of each stage, results from their outcomes.

ERROR checks are blocking (a failure stops the assets that follow in the run); WARN checks alert.
"""

import math
from collections.abc import Iterable, Mapping

import dagster as dg
import numpy as np

from feedback_loop.lib.checks import ERROR, CheckOutcome
from feedback_loop.lib.models import checks as model_checks
from feedback_loop.lib.monitoring import checks as monitoring_checks
from feedback_loop.lib.portfolio import checks as portfolio_checks
from feedback_loop.lib.signals import checks as signal_checks

#: asset name -> its checks (lib `Check`s), the stages in loop order.
ASSET_CHECKS = {**signal_checks.CHECKS, **portfolio_checks.CHECKS, **model_checks.CHECKS,
                **monitoring_checks.CHECKS}


def specs(asset_name: str) -> list[dg.AssetCheckSpec]:
    if asset_name not in ASSET_CHECKS:
        raise KeyError(f"no checks defined for asset {asset_name!r}; known: {', '.join(sorted(ASSET_CHECKS))}")
    return [dg.AssetCheckSpec(check.name, asset=asset_name, blocking=check.severity == ERROR,
                              description=check.description) for check in ASSET_CHECKS[asset_name]]


def _number(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "—" if not math.isfinite(value) else f"{float(value):.4f}"
    return str(value)


def _metadata_value(value) -> dg.MetadataValue:
    """A value a person reads: floats rounded to 4 places, NaN/None as null, mappings as tables."""
    if value is None:
        return dg.MetadataValue.null()
    if isinstance(value, (bool, np.bool_)):
        return dg.MetadataValue.bool(bool(value))
    if isinstance(value, (int, np.integer)):
        return dg.MetadataValue.int(int(value))
    if isinstance(value, (float, np.floating)):
        return dg.MetadataValue.float(round(float(value), 4)) if math.isfinite(value) else dg.MetadataValue.null()
    if isinstance(value, Mapping):
        rows = "\n".join(f"| {key} | {_number(v)} |" for key, v in value.items())
        return dg.MetadataValue.md("| key | value |\n|---|---|\n" + rows if rows else "_none_")
    if isinstance(value, (list, tuple, set)):
        return dg.MetadataValue.text(", ".join(map(str, value)) or "none")
    return dg.MetadataValue.text(str(value))


def results(check_outcomes: Iterable[CheckOutcome]) -> list[dg.AssetCheckResult]:
    return [dg.AssetCheckResult(
        check_name=outcome.name, passed=bool(outcome.passed),
        severity=dg.AssetCheckSeverity.ERROR if outcome.severity == ERROR else dg.AssetCheckSeverity.WARN,
        metadata={key: _metadata_value(value) for key, value in outcome.metadata.items()},
    ) for outcome in check_outcomes]


def not_evaluated(asset_name: str, reason: str) -> list[dg.AssetCheckResult]:
    """Results of every check of `asset_name` on a day with nothing to check (each says why)."""
    return results(check.not_evaluated(reason) for check in ASSET_CHECKS[asset_name])
