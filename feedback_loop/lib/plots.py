"""Plots as PNG embedded in markdown, the form the Dagster UI shows in materialization metadata."""

from __future__ import annotations

import base64


def png_markdown(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


#: Holdout metrics of the comparison plot, one panel per direction: they never share an axis.
HIGHER_IS_BETTER = ("accuracy", "f1_weighted", "roc_auc_ovr")
LOWER_IS_BETTER = ("brier", "ece")


def comparison_figure(new_metrics: dict, current_metrics: dict | None, holdout, challenger, champion):
    """Challenger vs champion on the same holdout: higher-is-better metrics, lower-is-better metrics
    (separate panels), and both reliability curves. A metric that is undefined draws no bar."""
    import numpy as np
    from matplotlib.figure import Figure
    from sklearn.calibration import calibration_curve

    figure = Figure(figsize=(13, 4))
    higher, lower, reliability = figure.subplots(1, 3, gridspec_kw={"width_ratios": [3, 2, 4]})
    for axis, keys, title in ((higher, HIGHER_IS_BETTER, "holdout metrics (higher is better)"),
                              (lower, LOWER_IS_BETTER, "holdout metrics (lower is better)")):
        x = np.arange(len(keys))
        sides = [("challenger", new_metrics), ("champion", current_metrics)] if current_metrics else \
            [("challenger", new_metrics)]
        for offset, (name, metrics) in zip((-0.2, 0.2), sides):
            values = [np.nan if metrics.get(k) is None else float(metrics[k]) for k in keys]
            axis.bar(x + offset, values, 0.4, label=name)
        axis.set_xticks(x, keys, rotation=20)
        axis.set_title(title)
        axis.legend()
    labels = holdout["label"].to_numpy()
    for name, model in (("challenger", challenger), ("champion", champion)):
        if model is None:
            continue
        proba = model.predict_proba(holdout[model.feature_names])
        top = proba.argmax(axis=1)
        observed, predicted = calibration_curve(top == labels, proba.max(axis=1), n_bins=8, strategy="quantile")
        reliability.plot(predicted, observed, marker="o", label=name)
    reliability.plot([0, 1], [0, 1], linestyle="--", color="grey")
    reliability.set_xlabel("predicted probability of the top class")
    reliability.set_ylabel("observed frequency")
    reliability.set_title("calibration on the holdout")
    reliability.legend()
    figure.tight_layout()
    return figure


def comparison_png(new_metrics: dict, current_metrics: dict | None, holdout, challenger, champion) -> bytes:
    """`comparison_figure` as PNG bytes."""
    import io

    buffer = io.BytesIO()
    comparison_figure(new_metrics, current_metrics, holdout, challenger, champion).savefig(
        buffer, format="png", dpi=80)
    return buffer.getvalue()
