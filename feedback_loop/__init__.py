"""feedback_loop: congressional-disclosure signals, paper trades, outcomes and retraining as Dagster assets."""
