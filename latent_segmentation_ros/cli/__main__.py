"""``python -m latent_segmentation_ros.cli``: the `latent-seg` command line."""
import sys

from latent_segmentation_ros.cli import main

sys.exit(main())
