"""The colcon side without ROS: package.xml (validated by catkin_pkg as colcon does),
CMakeLists.txt, executables, launch file and config agree with the code and each other."""
import ast
import re
from pathlib import Path

import pytest
import yaml

from latent_segmentation_ros.core.parameters import GRASP_PARAMETERS, SEGMENTATION_PARAMETERS, ParameterSet

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "latent_segmentation_ros"


@pytest.fixture(scope="module")
def package():
    from catkin_pkg.package import parse_package

    return parse_package(str(ROOT / "package.xml"))


@pytest.fixture(scope="module")
def cmake():
    return (ROOT / "CMakeLists.txt").read_text()


def test_package_xml_is_valid(package):
    package.validate()  # raises InvalidPackage, as colcon would
    assert package.name == PACKAGE
    assert package.package_format == 3
    assert package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [group.name for group in package.member_of_groups]
    buildtool = {d.name for d in package.buildtool_depends}
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= buildtool
    runtime = {d.name for d in package.exec_depends}
    assert {"rosidl_default_runtime", "rclpy", "message_filters", "diagnostic_updater", "launch_ros"} <= runtime


def test_version_matches_setup_py(package):
    setup = (ROOT / "setup.py").read_text()
    assert f'version="{package.version}"' in setup


def msg_files():
    return sorted(p.name for p in (ROOT / "msg").glob("*.msg"))


def test_cmake_generates_every_msg_file(cmake):
    listed = sorted(Path(m).name for m in re.findall(r'"(msg/[A-Za-z]+\.msg)"', cmake))
    assert listed == msg_files()
    assert "rosidl_generate_interfaces(${PROJECT_NAME}" in cmake


def test_msg_dependencies_are_declared(package, cmake):
    used = set()
    for name in msg_files():
        for line in (ROOT / "msg" / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and "/" in line.split()[0]:
                used.add(line.split()[0].split("/")[0])
    assert used == {"std_msgs", "sensor_msgs"}
    depends = {d.name for d in package.build_depends} | {d.name for d in package.exec_depends}
    match = re.search(r"DEPENDENCIES ([a-z_ ]+)\n", cmake)
    for dependency in used:
        assert dependency in depends
        assert dependency in match.group(1).split()
        assert f"find_package({dependency} REQUIRED)" in cmake


def test_msg_definitions_follow_rosidl_naming():
    field = re.compile(r"^[a-z][a-z0-9_]*$")
    for name in msg_files():
        assert re.match(r"^[A-Z][A-Za-z0-9]*\.msg$", name)
        for line in (ROOT / "msg" / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                type_name, field_name = line.split()[:2]
                assert field.match(field_name) and "__" not in field_name and not field_name.endswith("_"), line


def test_cmake_avoids_the_humble_python_install_clash(cmake):
    # ament_python_install_package(${PROJECT_NAME}) with rosidl_generate_interfaces breaks on Humble
    code = "\n".join(line.split("#")[0] for line in cmake.splitlines())
    assert "ament_python_install_package(${PROJECT_NAME}" not in code
    assert "DESTINATION ${PYTHON_INSTALL_DIR}/${PROJECT_NAME}" in cmake
    assert "ament_python_install_package(latent_maskrcnn PACKAGE_DIR training/latent_maskrcnn)" in cmake
    assert not (ROOT / PACKAGE / "msg").exists(), "the generated msg package would be shadowed"
    for directory in ("launch", "config", "models"):
        assert re.search(rf"install\(DIRECTORY [a-z ]*\b{directory}\b", cmake)
    assert "ament_export_dependencies(rosidl_default_runtime)" in cmake


def test_executables_are_installed_and_run_the_node_mains(cmake):
    programs = re.search(r"PROGRAMS ([^\n]+)\n\s*DESTINATION lib/\$\{PROJECT_NAME\}", cmake).group(1).split()
    assert programs == ["scripts/segmentation_node", "scripts/grasp_node"]
    for program in programs:
        path = ROOT / program
        assert path.stat().st_mode & 0o111, f"{program} is not executable"
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env python3\n")
        module = Path(program).name
        assert f"from latent_segmentation_ros.ros.{module} import main" in text
        tree = ast.parse((ROOT / PACKAGE / "ros" / f"{module}.py").read_text())
        assert "main" in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def launch_arguments():
    tree = ast.parse((ROOT / "launch" / "picking.launch.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ARGUMENTS":
            return {name: (default, text) for name, default, text in ast.literal_eval(node.value)}
    raise AssertionError("ARGUMENTS not found")


def test_launch_file_arguments():
    arguments = launch_arguments()
    required = {"namespace", "checkpoint", "device", "left_image_topic", "right_image_topic", "use_sim_time"}
    assert required <= set(arguments)
    assert all(text for _, text in arguments.values())
    source = (ROOT / "launch" / "picking.launch.py").read_text()
    assert 'DeclareLaunchArgument(\n            "config"' in source
    assert '"segmentation_node"' in source and '"grasp_node"' in source


def test_launch_description_builds_where_launch_is_installed():
    pytest.importorskip("launch_ros")
    import importlib.util

    spec = importlib.util.spec_from_file_location("picking_launch", ROOT / "launch" / "picking.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {argument.name for argument in description.get_launch_arguments()}
    assert {"config", *launch_arguments()} <= names


def test_config_has_every_parameter_with_its_default_and_a_comment():
    text = (ROOT / "config" / "picking.yaml").read_text()
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    specs = {**SEGMENTATION_PARAMETERS, **GRASP_PARAMETERS}
    assert set(values) == set(specs)
    for name, spec in specs.items():
        assert values[name] == spec.default, f"{name}: config says {values[name]!r}, code {spec.default!r}"
    ParameterSet(SEGMENTATION_PARAMETERS, {k: v for k, v in values.items() if k in SEGMENTATION_PARAMETERS})
    ParameterSet(GRASP_PARAMETERS, {k: v for k, v in values.items() if k in GRASP_PARAMETERS})
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^    ([a-z_]+):", line)
        if match:
            assert lines[index - 1].strip().startswith("#"), f"{match.group(1)} has no comment"


def test_readme_documents_every_parameter_and_launch_argument():
    readme = (ROOT / "README.md").read_text()
    for name in {**SEGMENTATION_PARAMETERS, **GRASP_PARAMETERS}:
        assert f"| `{name}` |" in readme, f"README lacks parameter {name}"
    for name in launch_arguments():
        assert f"`{name}`" in readme, f"README lacks launch argument {name}"
