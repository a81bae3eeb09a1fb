"""Systematic-diffusion analysis (method.md sections 4-5), shared by images and translation.

Where things are: ``core.py`` the pure core (captured features -> numbers and 2-D views);
``analyse.py`` the one loop over checkpoints and the library entry points; ``image_source.py`` /
``nmt_source.py`` what each modality knows; ``plots.py`` the figures (``plot_projection_grid``);
``report.py`` the files.

Library use::

    from lskd_plugins.diffusion import analyse_image_checkpoints, write_outputs
    records, projections = analyse_image_checkpoints(paths, data_dir, classes="cat,dog,airplane")
    write_outputs(records, projections, out_dir)
"""

from lskd_plugins.diffusion.analyse import (  # noqa: F401
    analyse_checkpoints,
    analyse_image_checkpoints,
    analyse_nmt_checkpoints,
)
from lskd_plugins.diffusion.core import ModelProjection, analyse_captured  # noqa: F401
from lskd_plugins.diffusion.plots import plot_projection_grid  # noqa: F401
from lskd_plugins.diffusion.report import write_outputs  # noqa: F401
