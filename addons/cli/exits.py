"""The exit codes of every `shopguard` command: 0 ok, 1 something found, 2 usage or input error."""

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2
