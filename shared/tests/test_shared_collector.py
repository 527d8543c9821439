"""A service process's garbage collector: young collections less often, the heap built at start frozen once."""

import gc
from collections.abc import Iterator

import pytest

from leadrelay.collector import tune_for_service
from leadrelay.service import ServiceSpec, create_service_app
from leadrelay.settings import ServiceSettings
from leadrelay.testing import free_port, migrations_of


@pytest.fixture
def collector() -> Iterator[None]:
    """Start from nothing frozen; give the test process its collector back afterwards."""
    threshold, was_frozen = gc.get_threshold(), gc.get_freeze_count() > 0
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        if was_frozen:
            gc.freeze()


@pytest.mark.usefixtures("collector")
def test_zero_leaves_the_interpreters_collector_as_it_is() -> None:
    before = gc.get_threshold()
    assert not tune_for_service(young_threshold=0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector")
def test_the_heap_built_so_far_leaves_the_collectors_sight_once() -> None:
    _, middle, old = gc.get_threshold()
    tracked = len(gc.get_objects())
    assert tune_for_service(young_threshold=12_345)
    assert gc.get_threshold() == (12_345, middle, old)
    frozen = gc.get_freeze_count()
    assert frozen > tracked // 2  # modules, classes, fixtures: what a full collection walked every time
    assert len(gc.get_objects()) < tracked // 2

    built_later = [[index] for index in range(1_000)]  # an app started again in the same process
    assert tune_for_service(young_threshold=54_321)
    assert gc.get_threshold() == (54_321, middle, old)
    assert gc.get_freeze_count() == frozen  # frozen objects are never collected: only the first start freezes
    assert any(item is built_later for item in gc.get_objects())


@pytest.mark.usefixtures("collector")
async def test_a_started_service_runs_with_its_setting(database_url: str) -> None:
    spec = ServiceSpec(title="test", description="test", migrations_dir=migrations_of("router"))
    settings = ServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",  # nothing to publish, nothing to consume
        gc_young_threshold=23_456,
    )
    app = create_service_app(spec, settings)
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == 23_456
        assert gc.get_freeze_count() > 0
