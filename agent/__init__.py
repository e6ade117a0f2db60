"""Talking to and capturing a live agent: the control protocol, the SDK an agent
embeds, and the backup side's quiesce / flush / horizon / capture / resume."""
