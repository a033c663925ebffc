"""pip install of the package without ROS: the ML module, the ROS-free core and the CLI."""
from glob import glob

from setuptools import find_packages, setup

ML_PACKAGES = ["latent_maskrcnn"] + [
    f"latent_maskrcnn.{name}" for name in find_packages("training/latent_maskrcnn")
]

setup(
    name="latent_segmentation_ros",
    version="0.1.0",
    description="Latent-MaskRCNN p-confidence masks for suction picking, with a ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["latent_segmentation_ros", "latent_segmentation_ros.*"]) + ML_PACKAGES,
    package_dir={"latent_maskrcnn": "training/latent_maskrcnn"},
    include_package_data=True,
    # the .msg files, where a ROS install keeps them (latent_segmentation_ros.core.messages finds them)
    data_files=[("share/latent_segmentation_ros/msg", sorted(glob("msg/*.msg")))],
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=1.24",
        "pycocotools>=2.0.7",
        "rosbags>=0.10",
        "mcap>=1.1",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "pyyaml>=6.0",
        "pillow>=10.0",
        "scipy>=1.10",
        "tensorboard>=2.14",
        "numba>=0.59",
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-xdist>=3", "hypothesis>=6.100", "catkin_pkg>=1.0"],
    },
    entry_points={"console_scripts": ["latent-seg=latent_segmentation_ros.cli:main"]},
)
