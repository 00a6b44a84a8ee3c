"""Interpretation of segments for the business: profiles and names."""
