"""Storage backends: the interface a repository needs (`base`: operations, and the
properties remote, write_concurrency and append_only that every backend declares),
opening one from a location (`location`, `access`), local directories (`local`),
S3-compatible stores (`s3`: the backend; `s3_settings`: location, settings and client;
`s3_errors`: classifying failures; `readahead`: whole-object fetches ahead of reads),
and the wrappers (`retry`, `throttle`, `appendonly`).

Knows bytes and names only: imports the top-level modules and fsio, never the
repository format, an engine, settings or anything above the store. Which caps a run
applies is settings/caps.py's decision.
"""
