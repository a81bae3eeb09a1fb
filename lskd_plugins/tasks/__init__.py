"""fairseq tasks of lskd (each module registers itself with @register_task)."""
