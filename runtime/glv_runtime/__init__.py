"""Runtime code every GLV service shares, written once."""
