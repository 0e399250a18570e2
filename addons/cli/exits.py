"""The exit codes of every `shopguard` command."""

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2
