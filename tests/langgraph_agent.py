"""Test equipment: the example LangGraph agent (docs/examples/langgraph_agent.py) with a pin.

    python tests/langgraph_agent.py [--pin-dir DIR] run --root ... (the example's options)

With --pin-dir, the first memory written into the vector index stops its step right
there (inside the tools node: the index holds the memory, the memory store does not
record it yet): the agent creates DIR/inside and waits until the test creates DIR/go. A copy
taken at that moment is taken inside a write, for certain, not by luck.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "langgraph_agent.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("langgraph_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def pin(directory: Path) -> object:
    once = threading.Lock()
    go = threading.Event()

    def hook() -> None:
        if once.acquire(blocking=False):
            (directory / "inside").touch()
            while not (directory / "go").exists():
                go.wait(0.01)

    return hook


def main() -> None:
    argv = sys.argv[1:]
    hook = None
    if argv[:1] == ["--pin-dir"]:
        directory = Path(argv[1])
        directory.mkdir(parents=True, exist_ok=True)
        hook, argv = pin(directory), argv[2:]
    load_example().main(argv, after_index=hook)


if __name__ == "__main__":
    main()
