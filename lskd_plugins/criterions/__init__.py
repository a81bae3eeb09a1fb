"""fairseq criteria of lskd (each module registers itself with @register_criterion)."""
