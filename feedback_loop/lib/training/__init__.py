"""Training: config, labeled sets, time splits, the XGBoost challenger, metrics, artifacts.

Import the submodules directly (`from feedback_loop.lib.training.model import train_challenger`).
"""
