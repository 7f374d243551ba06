"""An SPB-aware cluster scheduler (Jigsaw) and the trace-driven simulator it is measured in."""
