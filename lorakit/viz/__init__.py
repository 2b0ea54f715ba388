"""Drawing functions: each takes a matplotlib Axes and plain data; no widgets here."""
