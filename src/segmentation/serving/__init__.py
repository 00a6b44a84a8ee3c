"""Online serving of the production model (LitServe)."""
