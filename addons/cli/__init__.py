"""The `shopguard` command line."""
