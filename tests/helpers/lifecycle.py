"""`StopOnExit`: what the helpers that own processes share as context managers."""

from __future__ import annotations

from typing import Self


class StopOnExit:
    """`with thing:` stops it on the way out, whether the block raised or not."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
