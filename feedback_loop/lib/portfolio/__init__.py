"""Portfolio: the paper executor, the broker, outcomes, shadow outcomes, performance, and the loop's per-day tables."""
