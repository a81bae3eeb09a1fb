"""Systematic-diffusion analysis (method.md sections 4-5), shared by images and translation.

Library use::

    from lskd_plugins.diffusion import analyse_image_checkpoints, write_outputs
    records, projections = analyse_image_checkpoints(paths, data_dir, classes="cat,dog,airplane")
    write_outputs(records, projections, out_dir)
"""

from lskd_plugins.diffusion.analyse import (  # noqa: F401
    ModelProjection,
    analyse_captured,
    analyse_image_checkpoints,
    analyse_nmt_checkpoints,
)
from lskd_plugins.diffusion.report import write_outputs  # noqa: F401
