"""Transitional: the journal format's former single module, for the SDK's journal writer.

The format now lives in `frame` (records, framing, segment files), `scan` (verified
reading) and `replay` (applying records). This module only re-exports the names
`cleancut.sdk.journal_writer` imports until that file imports them from there; nothing
else may import it.
"""

from __future__ import annotations

from .frame import MIN_JOURNAL_WINDOW as MIN_JOURNAL_WINDOW
from .frame import RESERVED_PREFIX as RESERVED_PREFIX
from .frame import ZERO_HASH as ZERO_HASH
from .frame import Append as Append
from .frame import Delete as Delete
from .frame import JournalError as JournalError
from .frame import Mkdir as Mkdir
from .frame import Op as Op
from .frame import Put as Put
from .frame import Rename as Rename
from .frame import check_path as check_path
from .frame import encode_record as encode_record
from .frame import first_record as first_record
from .frame import is_under as is_under
from .frame import list_segments as list_segments
from .frame import segment_name as segment_name
from .replay import Replayer as Replayer
from .replay import read_marker as read_marker
from .scan import JournalTail as JournalTail
from .scan import read_journal as read_journal
from .scan import read_tail as read_tail
