"""Pure logic of the loop. No Dagster imports: every function takes its inputs and an explicit as_of."""
