"""The loop: its orchestration rules, the batch engine, history, replay and its report."""
