"""shopguard shipped defaults (package data)."""
