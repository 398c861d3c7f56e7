"""Programs the harness runs as separate processes: the contenders and the protocol bound."""
