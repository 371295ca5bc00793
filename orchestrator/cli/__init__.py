"""The command line: click parsing, each command's body, and what a run shows on a terminal.

The only package that imports click and rich. ``cli`` parses, ``cli_options`` holds the
options and their checks, ``commands`` does what each command does (``run_command``: run and
retry), ``progress`` renders a run.
"""
