"""Ray for the scale tests: one local cluster per test session, on loopback only.

Ray otherwise binds to the machine's external address and probes cloud-metadata addresses, so the cluster
starts with the variables of shared/scripts/ray_env.sh (sourced, not copied): HOME only while Ray's
processes start (they keep it; the tests do not), the RAY_* settings for the session.
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # workloads.py, beside this file: pickled by value for the workers
RAY_ENV = Path(__file__).resolve().parents[3] / "shared" / "scripts" / "ray_env.sh"


@pytest.fixture(scope="session")
def ray_variables() -> Iterator[dict[str, str]]:
    """The variables that sourcing ray_env.sh sets (HOME: a fresh folder, removed at the end)."""
    if not RAY_ENV.is_file():
        pytest.fail(f"{RAY_ENV} not found: Ray must not start without it (it keeps Ray on loopback)")
    out = subprocess.run(["bash", "-c", f'source "{RAY_ENV}" >/dev/null && env -0'], capture_output=True, check=True)
    after = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    variables = {k: v for k, v in after.items() if os.environ.get(k) != v and (k == "HOME" or k.startswith("RAY_"))}
    assert variables.get("RAY_USAGE_STATS_ENABLED") == "0" and "HOME" in variables, variables
    yield variables
    shutil.rmtree(variables["HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def ray_address(ray_variables: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Ray cluster of 2 CPUs on 127.0.0.1 (no dashboard), started once; its GCS address, for other drivers."""
    if "ray" in sys.modules:  # it reads some of the variables when imported
        pytest.fail("ray was imported before the Ray fixture set ray_env.sh's variables")
    saved = {k: os.environ.get(k) for k in ray_variables}
    os.environ.update(ray_variables)
    try:
        import ray
        from ray import cloudpickle
    except ImportError:
        _restore(saved)
        pytest.skip("ray is not installed (pip install -e '.[ray]'): the Ray executor cannot be tested")
    import workloads

    cloudpickle.register_pickle_by_value(workloads)  # the workers cannot import the tests' folder
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 _temp_dir=str(tmp_path_factory.mktemp("ray")), object_store_memory=200 * 2**20, log_to_driver=False)
    finally:
        _restore({"HOME": saved["HOME"]})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        _restore(saved)


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
