"""Hot backup: pausing a running agent (protocol v1, OpenClaw, freeze, hooks), staging
the cut, and handing it to the archiver.

The store never imports this package.
"""
