"""The `sendwarden` subcommands, one module each. A module has `register(subparsers)` that adds
its parser(s) and sets `func`; `proxy.cli` lists the modules."""
