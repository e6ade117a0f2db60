"""Filesystem primitives shared by every engine: exclusive temporary files, walking and
removing trees of any depth, opening only regular files, bounded reads.

Owns no policy; imports only cleancut.errors.
"""
