"""Plots as PNG embedded in markdown, the form the Dagster UI shows in materialization metadata."""

from __future__ import annotations

import base64


def png_markdown(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


COMPARED_METRICS = ("accuracy", "f1_weighted", "roc_auc_ovr", "brier", "ece")


def comparison_png(new_metrics: dict, current_metrics: dict | None, holdout, challenger, champion) -> bytes:
    """Side-by-side metrics of challenger and champion, and both reliability curves on the same holdout."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.calibration import calibration_curve

    fig, (bars, reliability) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(COMPARED_METRICS))
    bars.bar(x - 0.2, [new_metrics.get(k) or 0 for k in COMPARED_METRICS], 0.4, label="challenger")
    if current_metrics:
        bars.bar(x + 0.2, [current_metrics.get(k) or 0 for k in COMPARED_METRICS], 0.4, label="champion")
    bars.set_xticks(x, COMPARED_METRICS, rotation=20)
    bars.set_title("holdout metrics")
    bars.legend()
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
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()
