"""The `authmirror` command line: one module per command, each parses and calls a library function."""
