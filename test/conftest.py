"""Shared test settings.

Small thread count so parallel test workers do not oversubscribe. ROS 2: each pytest worker
talks DDS on loopback only and in its own domain (live tests take further domains of their
worker's range, see ``ros_domain``); where this package has been built with colcon (``make
test`` does; ``AMENT_PREFIX_PATH`` or ``install/`` of the checkout), the generated messages
(``latent_segmentation_ros.msg``) are found in the build while every other module still comes
from the source tree under test.
"""
import itertools
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

# Property tests and fuzz targets draw the same cases on every run (derandomised, so `make test`
# and CI are repeatable and a green run stays green); LATENT_SEG_FUZZ_EXPLORE=1 draws new ones
# (with LATENT_SEG_FUZZ_SCALE=N, N times as many per fuzz target) to hunt for new failures, each
# of which becomes a named regression case.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("repeatable", derandomize=True)
_hypothesis_settings.register_profile("explore", derandomize=False)
_hypothesis_settings.load_profile("explore" if os.environ.get("LATENT_SEG_FUZZ_EXPLORE") == "1" else "repeatable")

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "latent_segmentation_ros"
# Domains 50..99 (25 per worker) unless LATENT_SEG_TEST_DOMAIN_BASE says otherwise: two test
# runs on one host at once need different bases (DDS on loopback is shared by the host).
DOMAIN_BASE, DOMAINS_PER_WORKER = int(os.environ.get("LATENT_SEG_TEST_DOMAIN_BASE", "50")), 25


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


WORKER_DOMAIN = DOMAIN_BASE + DOMAINS_PER_WORKER * (_worker_index() % 2)
os.environ["ROS_DOMAIN_ID"] = str(WORKER_DOMAIN)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# The transports the README advises for camera images (config/fastdds_camera_images.xml): with
# Fast DDS's built-in ones, where /dev/shm cannot be shared, most 240 x 320 images were lost.
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds_camera_images.xml"))
_domains = itertools.count(WORKER_DOMAIN + 1)


def ros_install_prefixes() -> list[Path]:
    """colcon install prefixes holding this package's generated Python messages."""
    candidates = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates.append(ROOT / "install")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = []
    for prefix in candidates:
        if (prefix / "lib" / version / "site-packages" / PACKAGE / "msg" / "__init__.py").is_file():
            if prefix.resolve() not in [p.resolve() for p in found]:
                found.append(prefix)
    return found


def _add_built_messages() -> None:
    import latent_segmentation_ros

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in ros_install_prefixes():
        built = str(prefix / "lib" / version / "site-packages" / PACKAGE)
        if built not in latent_segmentation_ros.__path__:
            # after the sources: only what the sources lack (msg/, the type support libraries)
            latent_segmentation_ros.__path__.append(built)


_add_built_messages()


def next_ros_domain() -> int:
    """A ROS_DOMAIN_ID no other test of any worker uses during this run."""
    domain = next(_domains)
    if domain >= WORKER_DOMAIN + DOMAINS_PER_WORKER:
        raise RuntimeError("this worker ran out of ROS domain ids; widen DOMAINS_PER_WORKER")
    return domain


@pytest.fixture
def ros_domain() -> int:
    """A domain of the test's own."""
    return next_ros_domain()


@pytest.fixture(scope="module")
def ros_module_domain() -> int:
    """A domain of the module's own, for nodes its tests share."""
    return next_ros_domain()


def pytest_sessionstart(session: pytest.Session) -> None:
    """With LATENT_SEG_REQUIRE_ROS=1 (``make test``), rclpy and the built messages must import:
    the ROS tests are not allowed to skip for want of them."""
    if os.environ.get("LATENT_SEG_REQUIRE_ROS") != "1":
        return
    try:
        import rclpy  # noqa: F401

        from latent_segmentation_ros.msg import ConfidenceMaskArray  # noqa: F401
    except ImportError as error:
        pytest.exit(f"LATENT_SEG_REQUIRE_ROS=1 but ROS 2 is not usable here: {error}", returncode=3)
