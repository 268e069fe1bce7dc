"""A small VT100 screen: enough of xterm's control sequences to replay prompt_toolkit output.

Printable characters land at the cursor; ``\\r``, ``\\n``, ``\\b``, cursor movement (CSI A,
B, C, D, G, H/f, d), erasing (CSI J, K) and scrolling are honoured; attributes (CSI m),
modes (CSI ? h/l), OSC strings and other escapes are consumed and ignored. Tests feed it
what a program wrote to a pseudo-terminal and read back the lines as a user would see them.
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[([?>=]?)([0-9;]*)([ -/]*)([@-~])")
_OSC = re.compile(r"\x1b\].*?(?:\x07|\x1b\\)", re.S)
_OTHER_ESC = re.compile(r"\x1b[()#][0-9A-Za-z]|\x1b[0-9A-Za-z=<>]")


class Screen:
    """``rows`` x ``cols`` characters and a cursor."""

    def __init__(self, rows: int = 24, cols: int = 80) -> None:
        self.rows = rows
        self.cols = cols
        self.grid = [[" "] * cols for _ in range(rows)]
        self.row = 0
        self.col = 0
        self.autowrap = True
        self._pending = ""

    def feed(self, data: str) -> None:
        """Interpret terminal output (an escape sequence may be split across calls)."""
        text = self._pending + data
        self._pending = ""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                match = _CSI.match(text, i) or _OSC.match(text, i) or _OTHER_ESC.match(text, i)
                if match is None:
                    if len(text) - i < 64:  # probably cut short: keep it for the next feed
                        self._pending = text[i:]
                        return
                    i += 1  # garbage: skip the ESC
                    continue
                if match.re is _CSI:
                    self._csi(match.group(1), match.group(2), match.group(4))
                i = match.end()
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self._line_feed()
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch == "\t":
                self.col = min(self.cols - 1, (self.col // 8 + 1) * 8)
            elif ch >= " " and ch != "\x7f":
                self._put(ch)
            i += 1

    def _put(self, ch: str) -> None:
        if self.col >= self.cols:
            if self.autowrap:
                self.col = 0
                self._line_feed()
            else:
                self.col = self.cols - 1
        self.grid[self.row][self.col] = ch
        self.col += 1

    def _line_feed(self) -> None:
        if self.row == self.rows - 1:
            self.grid.pop(0)
            self.grid.append([" "] * self.cols)
        else:
            self.row += 1

    def _csi(self, private: str, params: str, final: str) -> None:
        if private == "?":
            if params == "7" and final in "hl":
                self.autowrap = final == "h"
            return
        args = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = args[0] if args and args[0] else 1
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + n)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + n)
        elif final == "D":
            self.col = max(0, min(self.col, self.cols - 1) - n)
        elif final == "G":
            self.col = min(self.cols - 1, n - 1)
        elif final == "d":
            self.row = min(self.rows - 1, n - 1)
        elif final in "Hf":
            self.row = min(self.rows - 1, (args[0] if args and args[0] else 1) - 1)
            self.col = min(self.cols - 1, (args[1] if len(args) > 1 and args[1] else 1) - 1)
        elif final == "J":
            mode = args[0] if args else 0
            if mode == 0:
                self._erase_line(self.row, self.col, self.cols)
                for r in range(self.row + 1, self.rows):
                    self._erase_line(r, 0, self.cols)
            elif mode == 1:
                for r in range(self.row):
                    self._erase_line(r, 0, self.cols)
                self._erase_line(self.row, 0, self.col + 1)
            else:
                for r in range(self.rows):
                    self._erase_line(r, 0, self.cols)
        elif final == "K":
            mode = args[0] if args else 0
            start, end = {0: (self.col, self.cols), 1: (0, self.col + 1)}.get(mode, (0, self.cols))
            self._erase_line(self.row, start, end)

    def _erase_line(self, row: int, start: int, end: int) -> None:
        for c in range(max(0, start), min(end, self.cols)):
            self.grid[row][c] = " "

    def lines(self) -> list[str]:
        """The screen's rows, trailing blanks removed."""
        return ["".join(cells).rstrip() for cells in self.grid]

    @property
    def cursor_line(self) -> str:
        """The row the cursor is on."""
        return "".join(self.grid[self.row]).rstrip()

    def text(self) -> str:
        """The non-empty rows, for failure messages."""
        return "\n".join(line for line in self.lines() if line)
