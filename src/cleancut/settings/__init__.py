"""Settings: the config file (`config_file`: finding, reading, checking it), backup
profiles and their fixed limits (`profiles`), the effective values of a source with
their origins (`effective`), the units the operator writes (`units`: durations,
bandwidth, sizes) and the bandwidth-cap policy (`caps`).

Must not import the engines (archiver, restorer, checker, prune, journal.repo, ops,
replication) or hot, sdk, cli and testing. `caps` reads a repository's config
(repository) and wraps backends (backend); `profiles` takes the journal window's
floor from the journal format.
"""
