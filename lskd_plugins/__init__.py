"""lskd: label smoothing x knowledge distillation, end to end.

Loaded by fairseq with ``--user-dir lskd_plugins``: fairseq is then already imported, and
importing this package registers the ``lskd_translation`` task and the ``lskd_kd`` criterion.
Everything else (the ``lskd`` command, the image trainer, the analysis) imports fairseq only
when it needs it, through ``lskd_plugins.fairseq_io``.
"""

import sys

__version__ = "0.1.0"

if "fairseq" in sys.modules:  # imported as fairseq's --user-dir (or after fairseq): register
    from lskd_plugins import fairseq_io as _fairseq_io

    _fairseq_io.register_plugins()
