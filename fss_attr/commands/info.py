"""``fss-attr info``: the same report as ``python -m fss_attr.info``."""
NAME = "info"
HELP = "versions, how the extension was built, which backends work"


def add_arguments(parser):
    pass


def run(args) -> int:
    from fss_attr.info import main

    return main()
